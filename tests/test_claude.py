"""Claude Code setup against the fake workspace, as a user runs it: the flags, the
interactive prompts in a real pseudo-terminal, the files written, and the token helper."""

import json
import os
import re
import pty
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (FMAPI, age_cache, cache_of, databricks_calls, expire_cli_session, make_stub, read_json,
                      run_fmapi)

CLAUDE_STUB = "#!/bin/sh\necho '2.1.331 (Claude Code)'\n"


@pytest.fixture
def claude_stub(home_bin):
    return make_stub(home_bin, "claude", CLAUDE_STUB)


@pytest.fixture
def setup_claude(home, workspace, logged_in, claude_stub):
    """Run a non-interactive setup into ~/.claude and return its paths."""

    def run(*extra, check=True):
        proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, *extra)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


def claude_dir(home):
    return home / ".claude"



def run_helper(helper, env=None, timeout=60):
    return subprocess.run(["/bin/sh", "-c", str(helper)], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)




# --- the non-interactive contract -----------------------------------------------------


def test_setup_writes_exactly_the_seed_settings(home, workspace, setup_claude):
    proc = setup_claude()
    d = claude_dir(home)
    settings = read_json(d / "settings.json")
    helper = d / "fmapi-key-helper.sh"
    assert settings == {
        "apiKeyHelper": str(helper),
        "env": {
            "ANTHROPIC_MODEL": "databricks-claude-opus-4-6",
            "ANTHROPIC_BASE_URL": workspace.url + "/serving-endpoints/anthropic",
            "ANTHROPIC_DEFAULT_OPUS_MODEL": "databricks-claude-opus-4-6",
            "ANTHROPIC_DEFAULT_SONNET_MODEL": "databricks-claude-sonnet-4-6",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "databricks-claude-haiku-4-5",
            "ANTHROPIC_CUSTOM_HEADERS": "x-databricks-use-coding-agent-mode: true",
            "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1",
            "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": "3600000",
        },
    }
    assert "Run `claude`" in proc.stdout
    # the PAT: minted with the seed's comment and the chosen lifetime, cached for the first start
    cache = cache_of(d)
    info = workspace.find_pat(cache["token"])
    assert re.fullmatch(r"Claude Code FMAPI \(created %s, #[0-9a-f]{8}\)" % time.strftime("%Y-%m-%d"), info["comment"])
    assert abs((info["expiry_time"] - info["creation_time"]) / 1000 - 86400) < 5
    assert read_json(home / ".claude.json") == {"hasCompletedOnboarding": True}


def test_file_modes_and_only_fmapi_files_beside_settings(home, setup_claude):
    setup_claude()
    d = claude_dir(home)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in d.iterdir()}
    assert modes == {
        "settings.json": 0o600,
        "fmapi-key-helper.sh": 0o700,
        ".fmapi-pat-cache": 0o600,
        ".fmapi-pat-ledger": 0o600,  # the PAT ids this install minted: never a token value
        ".fmapi-pat-cache.lock": 0o600,
    }
    cache = read_json(d / ".fmapi-pat-cache")
    assert cache["token"] not in (d / ".fmapi-pat-ledger").read_text()
    assert [p["token_id"] for p in read_json(d / ".fmapi-pat-ledger")["pats"]] == [cache["token_id"]]


def test_every_flag_is_honoured(home, workspace, logged_in, claude_stub, tmp_path):
    base = tmp_path / "custom base"
    proc = run_fmapi("setup", "--yes", "--host", workspace.url + "/some/path/", "--profile", logged_in,
                     "--model", "databricks-claude-sonnet-4-5", "--opus", "o-1", "--sonnet", "s-1", "--haiku", "h-1",
                     "--settings-location", str(base), "--pat-lifetime", "7", "--skip-model-check")
    assert proc.returncode == 0, proc.stderr
    settings = read_json(base / ".claude" / "settings.json")
    env = settings["env"]
    assert env["ANTHROPIC_BASE_URL"] == workspace.url + "/serving-endpoints/anthropic"
    assert (env["ANTHROPIC_MODEL"], env["ANTHROPIC_DEFAULT_OPUS_MODEL"], env["ANTHROPIC_DEFAULT_SONNET_MODEL"],
            env["ANTHROPIC_DEFAULT_HAIKU_MODEL"]) == ("databricks-claude-sonnet-4-5", "o-1", "s-1", "h-1")
    assert env["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] == "3600000"
    # a path with a space is quoted for /bin/sh, which runs apiKeyHelper
    assert subprocess.run(["/bin/sh", "-c", settings["apiKeyHelper"]], capture_output=True, text=True).stdout.strip() \
        == cache_of(base / ".claude")["token"]
    info = workspace.find_pat(cache_of(base / ".claude")["token"])
    assert abs((info["expiry_time"] - info["creation_time"]) / 1000 - 7 * 86400) < 5
    assert not (home / ".claude" / "settings.json").exists()


def test_settings_location_cwd(home, workspace, logged_in, claude_stub):
    proc = run_fmapi("--yes", "--host", workspace.url, "--profile", logged_in, "--settings-location", "cwd")
    assert proc.returncode == 0, proc.stderr
    assert (Path.cwd() / ".claude" / "settings.json").exists()
    token = run_fmapi("token", "--settings-location", "cwd")
    assert token.stdout.strip() == cache_of(Path.cwd() / ".claude")["token"]


def test_token_finds_the_project_install_from_inside_it_and_names_it_from_outside(home, workspace, logged_in, claude_stub,
                                                                                   monkeypatch, tmp_path):
    project = Path.cwd()
    assert run_fmapi("--yes", "--host", workspace.url, "--profile", logged_in, "--settings-location", "cwd").returncode == 0
    inside = project / "src" / "deep"
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)
    token = run_fmapi("token")
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip() == cache_of(project / ".claude")["token"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    proc = run_fmapi("token")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "--settings-location %s" % project in proc.stderr and "Set one up" not in proc.stderr
    assert not (home / ".claude").exists()


def test_missing_host_without_a_terminal_names_the_flag(home, claude_stub):
    proc = run_fmapi("setup")
    assert proc.returncode == 2
    assert "--host" in proc.stderr
    assert not (home / ".claude").exists()


@pytest.mark.parametrize("url", ["ftp://x.cloud.databricks.com", "http://x.cloud.databricks.com", "x.cloud.databricks.com"])
def test_non_https_url_is_refused_with_the_seed_text(home, claude_stub, url):
    proc = run_fmapi("setup", "--yes", "--host", url)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "fmapi: Workspace URL must start with https://"
    assert proc.stdout == ""


def test_bad_profile_name_is_refused(home, workspace, claude_stub):
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", "[bad]")
    assert proc.returncode == 2
    assert "cannot be a Databricks CLI profile name" in proc.stderr
    assert not (home / ".claude").exists()


def test_a_profile_of_another_workspace_is_not_repointed(home, workspace, claude_stub):
    cfg = home / ".databrickscfg"
    cfg.write_text("[team]\nhost = https://elsewhere.cloud.databricks.com/\nauth_type = databricks-cli\n")
    before = cfg.read_bytes()
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", "team")
    assert proc.returncode == 2
    assert "CLI profile 'team' belongs to https://elsewhere.cloud.databricks.com" in proc.stderr
    assert "--profile 127-0-0-1-%d" % workspace.port in proc.stderr  # a free name to use instead
    assert cfg.read_bytes() == before
    assert not (home / ".claude" / "settings.json").exists() and not workspace.pat_values()


def test_profile_defaults_to_one_derived_from_the_host(home, workspace, claude_stub):
    proc = run_fmapi("setup", "--yes", "--host", workspace.url)
    assert proc.returncode == 0, proc.stderr
    port = workspace.url.rsplit(":", 1)[1]
    status = run_fmapi("status")
    assert "profile 127-0-0-1-%s" % port in status.stdout
    # the sign-in created that CLI profile
    assert "[127-0-0-1-%s]" % port in (home / ".databrickscfg").read_text()


def test_version_and_help(home):
    assert run_fmapi("--version").stdout.strip().startswith("fmapi ")
    text = run_fmapi("--help").stdout
    for word in ("setup", "token", "uninstall", "--uninstall", "status", "gemini"):
        assert word in text
    setup_help = run_fmapi("setup", "--help").stdout
    for flag in ("--host", "--profile", "--model", "--opus", "--sonnet", "--haiku", "--settings-location", "--pat-lifetime", "--yes", "--agent"):
        assert flag in setup_help


# --- merging, re-running, repairing -----------------------------------------------------


RICH_SETTINGS = {
    "permissions": {"allow": ["Bash(git status)"], "deny": []},
    "theme": "dark",
    "hooks": {"PostToolUse": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "make fmt"}]}]},
    "env": {"MY_VAR": "keep me", "ANTHROPIC_AUTH_TOKEN": "dapi-old-stale", "ANTHROPIC_API_KEY": "sk-old"},
    "ANTHROPIC_AUTH_TOKEN": "stale-top-level",
    "_fmapi_meta": {"created": 1},
    "model": "opus",
}


def test_merge_keeps_every_user_key_and_drops_stale_credentials(home, workspace, setup_claude):
    d = claude_dir(home)
    d.mkdir()
    (d / "settings.json").write_text(json.dumps(RICH_SETTINGS))
    (home / ".claude.json").write_text(json.dumps({"numStartups": 12, "projects": {"/x": {}}}))
    setup_claude()
    settings = read_json(d / "settings.json")
    for key in ("permissions", "theme", "hooks", "model"):
        assert settings[key] == RICH_SETTINGS[key]
    assert "ANTHROPIC_AUTH_TOKEN" not in settings and "_fmapi_meta" not in settings
    assert settings["env"]["MY_VAR"] == "keep me"
    assert "ANTHROPIC_AUTH_TOKEN" not in settings["env"] and "ANTHROPIC_API_KEY" not in settings["env"]
    assert settings["env"]["ANTHROPIC_BASE_URL"] == workspace.url + "/serving-endpoints/anthropic"
    assert read_json(home / ".claude.json") == {"numStartups": 12, "projects": {"/x": {}}, "hasCompletedOnboarding": True}
    assert stat.S_IMODE((d / "settings.json").stat().st_mode) == 0o600


def test_rerun_is_idempotent_and_keeps_the_token(home, workspace, setup_claude):
    setup_claude("--model", "databricks-claude-sonnet-4-5", "--pat-lifetime", "3")
    d = claude_dir(home)
    first = (d / "settings.json").read_bytes()
    token = cache_of(d)["token"]
    # a re-run with --yes and no answers takes the existing install's values
    proc = run_fmapi("setup", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (d / "settings.json").read_bytes() == first
    assert cache_of(d)["token"] == token
    assert len(workspace.pats_with_comment_prefix("Claude Code FMAPI")) == 1


def test_rerun_replaces_a_cached_pat_that_was_revoked_in_the_workspace(home, workspace, setup_claude):
    setup_claude()
    d = claude_dir(home)
    old = cache_of(d)
    workspace.revoke_pat(old["token"])  # e.g. `fmapi --uninstall --revoke` on another machine
    proc = setup_claude()
    assert "revoked" in proc.stdout
    new = cache_of(d)["token"]
    assert new != old["token"] and new in workspace.pat_values()
    proc = run_helper(d / "fmapi-key-helper.sh")
    assert proc.stdout.strip() == new


def test_rerun_updates_models_and_lifetime_and_replaces_only_its_own_pat(home, workspace, setup_claude):
    other = workspace.add_pat("Claude Code FMAPI (created 2026-01-01)", 86400)  # another machine's
    setup_claude()
    d = claude_dir(home)
    old = cache_of(d)
    setup_claude("--haiku", "databricks-claude-haiku-9", "--pat-lifetime", "5", "--skip-model-check")
    new = cache_of(d)
    assert new["token"] != old["token"]
    assert read_json(d / "settings.json")["env"]["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "databricks-claude-haiku-9"
    live = workspace.pat_values()
    assert old["token"] not in live  # this install's replaced PAT is revoked
    assert new["token"] in live and other["token_value"] in live  # the other one survives


def test_corrupt_settings_are_backed_up_and_rebuilt(home, workspace, setup_claude):
    d = claude_dir(home)
    d.mkdir()
    broken = b'{"theme": "dark",,, oops'
    (d / "settings.json").write_bytes(broken)
    proc = setup_claude()
    backups = list(d.glob("settings.json.fmapi-backup-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == broken
    assert backups[0].name in proc.stderr
    assert read_json(d / "settings.json")["apiKeyHelper"].endswith("fmapi-key-helper.sh")


def test_missing_helper_is_repaired_by_a_rerun(home, setup_claude):
    setup_claude()
    helper = claude_dir(home) / "fmapi-key-helper.sh"
    helper.unlink()
    setup_claude()
    assert os.access(helper, os.X_OK)
    assert run_helper(helper).returncode == 0


def test_upgrade_from_the_shell_wrapper(home, workspace, setup_claude):
    rc = home / ".zshrc"
    rc.write_text("export A=1\n# >>> claude-fmapi wrapper >>>\nclaude() { ANTHROPIC_AUTH_TOKEN=$(databricks auth token) command claude; }\n"
                  "# <<< claude-fmapi wrapper <<<\nexport B=2\n")
    d = claude_dir(home)
    d.mkdir()
    (d / "settings.json").write_text(json.dumps({"env": {"ANTHROPIC_AUTH_TOKEN": "dapiold"}, "_fmapi_meta": {"v": 1}}))
    proc = setup_claude()
    assert rc.read_text() == "export A=1\nexport B=2\n"
    assert "wrapper" in proc.stdout
    settings = read_json(d / "settings.json")
    assert "_fmapi_meta" not in settings and "ANTHROPIC_AUTH_TOKEN" not in settings["env"]


# --- the token helper ---------------------------------------------------------------------


def test_helper_cache_hit_needs_no_network_and_no_process(home, workspace, setup_claude, tmp_path):
    setup_claude()
    helper = claude_dir(home) / "fmapi-key-helper.sh"
    token = cache_of(claude_dir(home))["token"]
    workspace.stop()  # no workspace at all
    calls_before = len(databricks_calls(tmp_path))
    env = dict(os.environ, PATH="/nonexistent")  # no databricks, no python on PATH
    proc = run_helper(helper, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == token + "\n"
    assert proc.stderr == ""
    assert len(databricks_calls(tmp_path)) == calls_before


def test_helper_survives_deleting_the_fmapi_it_came_from(home, workspace, logged_in, claude_stub, tmp_path):
    copy = tmp_path / "download" / "fmapi.py"
    copy.parent.mkdir()
    shutil.copy(FMAPI, copy)
    proc = subprocess.run([sys.executable, str(copy), "setup", "--yes", "--host", workspace.url, "--profile", logged_in],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(copy.parent)
    d = claude_dir(home)
    age_cache(d, 10)  # force the slow path, which needs the whole module
    out = run_helper(d / "fmapi-key-helper.sh")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == cache_of(d)["token"]


def test_helper_renews_an_expiring_token_and_revokes_only_the_replaced_one(home, workspace, setup_claude):
    setup_claude()
    d = claude_dir(home)
    other = workspace.add_pat("Claude Code FMAPI (created 2026-01-01)", 86400)
    old = age_cache(d, 3600)  # an hour left: less than the agent's TTL + 5 min
    proc = run_helper(d / "fmapi-key-helper.sh")
    assert proc.returncode == 0, proc.stderr
    new_token = proc.stdout.strip()
    assert new_token != old["token"] and new_token == cache_of(d)["token"]
    assert new_token in workspace.pat_values()
    deadline = time.time() + 10  # the old PAT is revoked in the background, after the answer
    while old["token"] in workspace.pat_values() and time.time() < deadline:
        time.sleep(0.05)
    assert old["token"] not in workspace.pat_values()
    assert other["token_value"] in workspace.pat_values()


@pytest.mark.parametrize("seconds_left, renews", [(3600 + 25 * 60, True), (3600 + 35 * 60, False)])
def test_min_remaining_is_configurable_and_kept_on_rerun(home, workspace, setup_claude, seconds_left, renews):
    setup_claude("--min-remaining", "30")
    setup_claude()  # a re-run without the flag keeps the install's margin
    d = claude_dir(home)
    old = age_cache(d, seconds_left)  # the TTL (1 h) plus 25 or 35 minutes
    proc = run_helper(d / "fmapi-key-helper.sh")
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout.strip() != old["token"]) is renews
    assert proc.stdout.strip() == cache_of(d)["token"]


@pytest.mark.parametrize("value", ["0", "721", "soon"])
def test_min_remaining_out_of_range_is_a_usage_error(home, workspace, setup_claude, value):
    proc = setup_claude("--min-remaining", value, check=False)
    assert proc.returncode == 2
    assert "--min-remaining" in proc.stderr and "from 1 to 720" in proc.stderr
    assert not (claude_dir(home) / "settings.json").exists()


def test_helper_mints_again_when_the_cache_is_deleted(home, workspace, setup_claude):
    setup_claude()
    d = claude_dir(home)
    (d / ".fmapi-pat-cache").unlink()
    proc = run_helper(d / "fmapi-key-helper.sh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in workspace.pat_values()
    assert stat.S_IMODE((d / ".fmapi-pat-cache").stat().st_mode) == 0o600


def test_eight_concurrent_helpers_mint_exactly_one_pat(home, workspace, setup_claude):
    setup_claude()
    d = claude_dir(home)
    age_cache(d, -10)
    before = set(workspace.pat_values())
    workspace.latency = 0.2  # widen the race
    procs = [subprocess.Popen(["/bin/sh", "-c", str(d / "fmapi-key-helper.sh")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    tokens = {o[0].strip() for o in outs}
    assert len(tokens) == 1
    minted = set(workspace.pat_values()) - before
    assert minted == tokens
    assert len(workspace.requests_to("/api/2.0/token/create")) == 2  # setup's and this one


def test_expired_session_tells_the_user_how_to_sign_in(home, workspace, setup_claude, logged_in):
    setup_claude()
    d = claude_dir(home)
    age_cache(d, 10)
    expire_cli_session(home, workspace)
    proc = run_helper(d / "fmapi-key-helper.sh")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "databricks auth login --host %s --profile %s" % (workspace.url, logged_in) in proc.stderr
    token = run_fmapi("token")
    assert token.returncode != 0 and token.stdout == ""
    assert "databricks auth login --host %s --profile %s" % (workspace.url, logged_in) in token.stderr


def test_a_cache_that_cannot_be_written_is_one_error_and_no_stray_pat(home, workspace, setup_claude):
    setup_claude()
    d = claude_dir(home)
    (d / ".fmapi-pat-cache").unlink()
    (d / ".fmapi-pat-cache").mkdir()  # the cache cannot be replaced, like a full or read-only disk
    before = set(workspace.pat_values())
    for _ in range(2):
        proc = run_helper(d / "fmapi-key-helper.sh")
        assert proc.returncode != 0 and proc.stdout == ""
        assert "could not save the token cache" in proc.stderr and "Traceback" not in proc.stderr
    assert set(workspace.pat_values()) == before  # each PAT minted was taken back at once
    assert not [n for n in os.listdir(d) if n.endswith(".fmapi-tmp")]


def test_a_failed_renewal_falls_back_to_a_cached_pat_that_still_works(home, workspace, setup_claude, logged_in):
    setup_claude()
    d = claude_dir(home)
    old = age_cache(d, 30 * 60)  # less than the agent's TTL + margin, but still half an hour of life
    expire_cli_session(home, workspace)
    proc = run_helper(d / "fmapi-key-helper.sh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == old["token"]
    assert "databricks auth login --host %s --profile %s" % (workspace.url, logged_in) in proc.stderr
    assert "using the cached token meanwhile" in proc.stderr


def test_fmapi_token_prints_only_the_token(home, workspace, setup_claude):
    setup_claude()
    proc = run_fmapi("token")
    assert proc.returncode == 0
    assert proc.stdout == cache_of(claude_dir(home))["token"] + "\n"


def test_fmapi_token_without_an_install(home):
    proc = run_fmapi("token")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "no fmapi install" in proc.stderr and "fmapi setup" in proc.stderr


def test_no_token_in_any_argv_or_output(home, workspace, setup_claude, tmp_path):
    proc = setup_claude()
    d = claude_dir(home)
    age_cache(d, 10)
    run_helper(d / "fmapi-key-helper.sh")
    tokens = {info["token_value"] for info in workspace.tokens.values()}
    argvs = json.dumps(databricks_calls(tmp_path))
    for token in tokens:
        assert token not in argvs
        assert token not in proc.stdout and token not in proc.stderr
        assert token not in (d / "fmapi-key-helper.sh").read_text()
        assert token not in (d / "settings.json").read_text()


# --- interactive, in a real pseudo-terminal ---------------------------------------------


class Terminal:
    """fmapi in a pseudo-terminal: read what it shows, type like a person."""

    def __init__(self, args, cwd, env=None, columns=None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: fmapi on a controlling terminal (TERM=xterm unless env says)
            os.chdir(cwd)
            for name, value in dict({"TERM": "xterm"}, **(env or {})).items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if columns:
                import fcntl
                import struct
                import termios
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
            os.execv(sys.executable, [sys.executable, str(FMAPI)] + list(args))
        self.buffer = ""
        self.history = ""  # everything fmapi wrote, for a terminal emulator

    def expect(self, text, timeout=30):
        deadline = time.time() + timeout
        while text not in self.buffer:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("did not see %r; screen so far:\n%s" % (text, self.buffer))
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError("fmapi ended before %r; screen:\n%s" % (text, self.buffer))
                self.buffer += chunk.decode("utf-8", "replace")
                self.history += chunk.decode("utf-8", "replace")
        seen, self.buffer = self.buffer.split(text, 1)
        return seen

    def send(self, keys):
        os.write(self.fd, keys.encode())

    def finish(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                self.buffer += chunk.decode("utf-8", "replace")
                self.history += chunk.decode("utf-8", "replace")
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("fmapi did not finish; screen:\n" + self.buffer)


UP, DOWN, ENTER = "\x1b[A", "\x1b[B", "\r"
OTHER = "Other\u2026"


def test_interactive_setup_with_typed_answers_and_arrow_keys(home, workspace, logged_in, claude_stub, tmp_path):
    term = Terminal([], cwd=os.getcwd())
    term.expect("Workspace URL")
    term.send("ftp://nope\r")
    term.expect("Workspace URL must start with https://")  # asked again, not a crash
    term.expect("Workspace URL")
    term.send(workspace.url + "/\r")
    term.expect("CLI profile name")
    term.send(logged_in + "\r")
    term.expect("Credential")  # right after the profile (issue 11); PAT is the default for a new install
    term.expect("renewed through the Databricks CLI)")
    term.send(ENTER)
    # signed in, fmapi offers the workspace's Claude endpoints, the default first, then Other…
    term.expect("Model:")
    menu = term.expect(OTHER)
    assert menu.index("databricks-claude-opus-4-6") < menu.index("databricks-claude-haiku-4-5")
    assert "gpt" not in menu and "gemini" not in menu and "llama" not in menu
    term.send(ENTER)
    term.expect("Opus model:")
    term.expect(OTHER)
    term.send(ENTER)
    term.expect("Sonnet model:")
    term.expect(OTHER)
    term.send(UP + ENTER)  # Other…: free text, checked against the workspace
    term.expect("Sonnet model [databricks-claude-sonnet-4-6]")
    term.send("databricks-claude-sonet-4-5\r")
    term.expect("no serving endpoint 'databricks-claude-sonet-4-5'; the nearest: databricks-claude-sonnet-4-5")
    term.expect("Sonnet model [databricks-claude-sonnet-4-6]")
    term.send("databricks-claude-sonnet-4-5\r")
    term.expect("Haiku model:")
    term.expect(OTHER)
    term.send(ENTER)
    term.expect("Settings location")
    term.expect("Custom path")  # the whole selector is drawn
    term.send(DOWN + DOWN + UP)  # to "Current directory"
    term.send(ENTER)
    term.expect("PAT lifetime")
    term.send(DOWN + DOWN + ENTER)  # 5 days
    assert term.finish() == 0, term.buffer
    d = Path(os.getcwd()) / ".claude"
    env = read_json(d / "settings.json")["env"]
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "databricks-claude-sonnet-4-5"
    assert env["ANTHROPIC_MODEL"] == "databricks-claude-opus-4-6"
    info = workspace.find_pat(cache_of(d)["token"])
    assert abs((info["expiry_time"] - info["creation_time"]) / 1000 - 5 * 86400) < 5
    assert not (home / ".claude" / "settings.json").exists()


def test_interactive_custom_path(home, workspace, logged_in, claude_stub, tmp_path):
    base = tmp_path / "proj"
    term = Terminal(["--host", workspace.url, "--profile", logged_in, "--model", "m", "--opus", "o", "--sonnet", "s",
                     "--haiku", "h", "--skip-model-check"], cwd=os.getcwd())
    term.expect("renewed through the Databricks CLI)")  # the Credential selector: PAT
    term.send(ENTER)
    term.expect("Settings location")
    term.send(DOWN + DOWN + ENTER)
    term.expect("Base path")
    term.send(str(base) + "\r")
    term.expect("PAT lifetime")
    term.send(ENTER)
    assert term.finish() == 0, term.buffer
    assert read_json(base / ".claude" / "settings.json")["env"]["ANTHROPIC_MODEL"] == "m"


def test_ctrl_c_at_a_selector_exits_130_restores_the_terminal_and_writes_nothing(home, workspace, logged_in, claude_stub):
    term = Terminal(["--host", workspace.url, "--profile", logged_in], cwd=os.getcwd())
    term.expect("renewed through the Databricks CLI)")  # the Credential selector
    term.send(ENTER)
    for label in ("Model", "Opus model", "Sonnet model", "Haiku model"):
        term.expect(label + ":")
        term.expect(OTHER)
        term.send(ENTER)
    term.expect("Settings location")
    term.send(DOWN)
    time.sleep(0.2)
    term.send("\x03")
    assert term.finish() == 130
    assert "\x1b[?25h" in term.buffer  # the cursor is shown again
    assert not (home / ".claude").exists()
    assert not list(home.rglob("*.fmapi-tmp"))


def test_cache_hit_imports_nothing_it_does_not_need(home, setup_claude):
    """The helper's cache-hit path: no json, no urllib, no subprocess (each costs milliseconds)."""
    import shlex

    setup_claude()
    helper = claude_dir(home) / "fmapi-key-helper.sh"
    words = shlex.split([line for line in helper.read_text().splitlines() if line.startswith("exec ")][0])[1:]
    proc = subprocess.run([words[0], "-X", "importtime"] + words[1:], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == cache_of(claude_dir(home))["token"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "fmapi" in imported
    assert not imported & {"json", "re", "urllib", "urllib.request", "subprocess", "socket", "tempfile", "fcntl"}


@pytest.mark.parametrize("offset", ["-12:00", "+05:30", "+14:00"])
def test_cli_expiry_in_any_offset_is_understood(home, workspace, setup_claude, monkeypatch, offset):
    """The CLI prints its token's expiry in local time with nine fractional digits; a misread
    offset would make a fresh token look expired (and fmapi would ask for a new sign-in)."""
    monkeypatch.setenv("FAKE_DATABRICKS_TZ_OFFSET", offset)
    setup_claude()
    age_cache(claude_dir(home), 10)
    proc = run_helper(claude_dir(home) / "fmapi-key-helper.sh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in workspace.pat_values()
