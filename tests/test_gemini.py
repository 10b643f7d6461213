"""Gemini CLI through fmapi, as a user runs it, against the fake workspace: setup merging
~/.gemini/settings.json, `fmapi gemini` handing a stand-in `gemini` a fresh token in its
environment (exec, so its exit code and the process are gemini's), --write-env's .env file,
and uninstall giving the user's files back."""

import json
import os
import re
import pty
import select
import signal
import socket
import sys
import time

import pytest

from conftest import FMAPI, age_cache, cache_of, expire_cli_session, make_stub, mode_of, read_json, run_fmapi

GEMINI_STUB = """#!{python}
import json, os, sys
if sys.argv[1:] == ["--version"]:
    print({version!r})
    sys.exit(0)
mask = os.umask(0)
os.umask(mask)
with open({record!r}, "w") as handle:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "ppid": os.getppid(), "umask": mask,
               "tty": [os.isatty(fd) for fd in (0, 1, 2)]}}, handle)
sys.exit(int(os.environ.get("GEMINI_STUB_EXIT", "0")))
"""

RICH_SETTINGS = {
    "general": {"vimMode": True, "preferredEditor": "nvim"},
    "ui": {"theme": "GitHub", "hideBanner": True},
    "security": {"auth": {"selectedType": "oauth-personal", "useExternal": False},
                 "folderTrust": {"enabled": True}},
    "model": {"name": "gemini-2.5-flash", "maxSessionTurns": 40},
    "mcpServers": {"github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                              "env": {"GITHUB_TOKEN": "$GITHUB_TOKEN"}}},
    "context": {"fileName": ["GEMINI.md", "AGENTS.md"]},
}




@pytest.fixture
def gemini_record(tmp_path):
    """Where the stand-in gemini writes what it was started with."""
    return tmp_path / "gemini-run.json"


def gemini_stub(home_bin, record, version="0.61.0"):
    return make_stub(home_bin, "gemini", GEMINI_STUB.format(python=sys.executable, version=version, record=str(record)))


@pytest.fixture
def stub(home_bin, gemini_record):
    return gemini_stub(home_bin, gemini_record)


@pytest.fixture
def gdir(home):
    return home / ".gemini"


@pytest.fixture
def setup_gemini(home, workspace, logged_in, stub):
    def run(*extra, check=True, env=None):
        proc = run_fmapi("setup", "--agent", "gemini", "--yes", "--host", workspace.url, "--profile", logged_in,
                         *extra, env=env)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def launch(gemini_record, *args, env=None):
    """`fmapi gemini ARGS` -> (process, what the stand-in gemini saw or None)."""
    if gemini_record.exists():
        gemini_record.unlink()
    proc = run_fmapi("gemini", *args, env=env)
    seen = read_json(gemini_record) if gemini_record.exists() else None
    return proc, seen




def token_creations(workspace):
    return workspace.requests_to("/api/2.0/token/create", "POST")


def dotenv(text):
    """KEY -> value as Gemini CLI's dotenv reads it (simple lines; the last one wins)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip('"')
    return values


# --- setup ------------------------------------------------------------------------------


def test_setup_merges_settings_over_a_rich_file(home, workspace, gdir, setup_gemini):
    gdir.mkdir()
    (gdir / "settings.json").write_text(json.dumps(RICH_SETTINGS, indent=2))
    proc = setup_gemini()
    assert "Run: fmapi gemini" in proc.stdout

    settings = read_json(gdir / "settings.json")
    expected = json.loads(json.dumps(RICH_SETTINGS))
    expected["security"]["auth"]["selectedType"] = "gemini-api-key"
    expected["model"]["name"] = "databricks-gemini-2-5-pro"
    assert settings == expected

    cache = cache_of(gdir)
    assert mode_of(gdir / ".fmapi-pat-cache") == 0o600
    assert cache["token"] in workspace.pat_values()
    assert re.fullmatch(r"Gemini CLI FMAPI \(created %s, #[0-9a-f]{8}\)" % time.strftime("%Y-%m-%d"), cache["comment"])
    assert [p["comment"] for p in workspace.pats_with_comment_prefix("Gemini CLI FMAPI")] == [cache["comment"]]
    assert not (gdir / ".env").exists()
    assert not (gdir / "fmapi-key-helper.sh").exists()


def test_setup_into_an_empty_home_creates_only_what_gemini_needs(home, workspace, gdir, setup_gemini):
    setup_gemini("--model", "databricks-gemini-3-pro", "--pat-lifetime", "3")
    assert read_json(gdir / "settings.json") == {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "model": {"name": "databricks-gemini-3-pro"},
    }
    cache = cache_of(gdir)
    assert 3 * 86400 - 120 < cache["expiry"] - time.time() <= 3 * 86400


def test_gemini_cli_home_moves_the_install(home, workspace, tmp_path, setup_gemini, gemini_record):
    other = tmp_path / "gemini-home"
    env = {"GEMINI_CLI_HOME": str(other)}
    setup_gemini(env=env)
    assert read_json(other / ".gemini" / "settings.json")["model"]["name"] == "databricks-gemini-2-5-pro"
    assert (other / ".gemini" / ".fmapi-pat-cache").exists()
    assert not (home / ".gemini").exists()

    proc, seen = launch(gemini_record, "-p", "hi", env=env)
    assert proc.returncode == 0, proc.stderr
    assert seen["env"]["GEMINI_API_KEY"] == cache_of(other / ".gemini")["token"]

    # Without it (issue 12): fmapi finds that install, and gemini is started with it so it reads that settings.json.
    proc, seen = launch(gemini_record, "-p", "hi")
    assert proc.returncode == 0, proc.stderr
    assert seen["env"]["GEMINI_CLI_HOME"] == str(other)
    assert seen["env"]["GEMINI_API_KEY"] == cache_of(other / ".gemini")["token"]
    assert not (home / ".gemini").exists()


def test_gemini_older_than_0_19_is_refused_with_an_upgrade_instruction(home, workspace, gdir, home_bin,
                                                                       gemini_record, setup_gemini):
    gemini_stub(home_bin, gemini_record, version="0.18.4")
    proc = setup_gemini(check=False)
    assert proc.returncode == 1
    assert "0.18.4" in proc.stderr and "0.19.0" in proc.stderr
    assert "npm install -g @google/gemini-cli@latest" in proc.stderr
    assert not workspace.tokens
    assert not (gdir / "settings.json").exists()


def test_settings_that_are_not_json_are_left_untouched(home, workspace, gdir, setup_gemini):
    gdir.mkdir()
    original = b'{\n  // my theme\n  "ui": {"theme": "GitHub"},\n}\n'
    (gdir / "settings.json").write_bytes(original)
    proc = setup_gemini(check=False)
    assert proc.returncode == 1
    assert "settings.json" in proc.stderr and "comments" in proc.stderr
    assert (gdir / "settings.json").read_bytes() == original
    assert not workspace.tokens  # refused before anything was minted
    assert not (gdir / ".fmapi-pat-cache").exists()


def test_a_settings_value_gemini_cannot_read_is_refused(home, workspace, gdir, setup_gemini):
    gdir.mkdir()
    original = json.dumps({"model": "gemini-2.5-pro", "ui": {"theme": "GitHub"}})
    (gdir / "settings.json").write_text(original)
    proc = setup_gemini(check=False)
    assert proc.returncode == 1
    assert '"model"' in proc.stderr and "not an object" in proc.stderr
    assert (gdir / "settings.json").read_text() == original
    assert not workspace.tokens


def test_fmapi_token_serves_the_gemini_install(home, workspace, gdir, setup_gemini):
    setup_gemini()
    proc = run_fmapi("token", "--agent", "gemini")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == cache_of(gdir)["token"] + "\n"


# --- fmapi gemini -----------------------------------------------------------------------


def test_fmapi_gemini_hands_the_token_in_the_environment_only(home, workspace, gdir, setup_gemini, gemini_record):
    setup_gemini()
    token = cache_of(gdir)["token"]
    old = os.umask(0o022)
    try:
        proc, seen = launch(gemini_record, "-p", "explain this repo", "--yolo", "-m", "x")
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert seen["argv"] == ["-p", "explain this repo", "--yolo", "-m", "x"]
    env = seen["env"]
    assert env["GEMINI_API_KEY"] == token
    assert token in workspace.pat_values()
    assert env["GOOGLE_GEMINI_BASE_URL"] == workspace.url + "/serving-endpoints/gemini"
    assert env["GEMINI_API_KEY_AUTH_MECHANISM"] == "bearer"
    assert env["GEMINI_MODEL"] == "databricks-gemini-2-5-pro"
    assert env["GEMINI_CLI_CUSTOM_HEADERS"] == "x-databricks-use-coding-agent-mode: true"
    assert env["HOME"] == str(home)  # the rest of the user's environment passes through
    assert not any(token in arg for arg in seen["argv"])
    assert token not in proc.stdout + proc.stderr
    assert seen["ppid"] == os.getpid()  # fmapi replaced itself: gemini is this test's child
    assert seen["umask"] == 0o022  # files gemini writes get the user's umask, not fmapi's 077
    assert not token_creations(workspace)[1:]  # the fresh token was reused, not renewed


def test_gemini_exit_status_passes_through(home, workspace, setup_gemini, gemini_record):
    setup_gemini()
    proc, seen = launch(gemini_record, "-p", "fail please", env={"GEMINI_STUB_EXIT": "41"})
    assert seen is not None
    assert proc.returncode == 41


def test_help_and_unknown_flags_go_to_gemini(home, workspace, setup_gemini, gemini_record):
    setup_gemini()
    proc, seen = launch(gemini_record, "--help")
    assert proc.returncode == 0 and seen["argv"] == ["--help"]
    assert "usage: fmapi" not in proc.stdout
    proc, seen = launch(gemini_record, "--version", "--agent", "claude")
    assert seen["argv"] == ["--version", "--agent", "claude"]


def test_an_about_to_expire_token_is_renewed_before_launch(home, workspace, gdir, setup_gemini, gemini_record):
    setup_gemini()
    old = age_cache(gdir, 2 * 3600)  # valid, but not for a working session
    proc, seen = launch(gemini_record, "-p", "hi")
    assert proc.returncode == 0, proc.stderr
    new = cache_of(gdir)
    assert new["token"] != old["token"]
    assert seen["env"]["GEMINI_API_KEY"] == new["token"]
    assert new["expiry"] - time.time() > 23 * 3600
    assert "new Gemini CLI token" in proc.stderr
    # a session still running on the old token keeps working: it is left to expire, not revoked
    assert {old["token"], new["token"]} <= workspace.pat_values()
    assert new["comment"].startswith("Gemini CLI FMAPI (created ")


def test_a_token_with_a_session_left_is_not_renewed(home, workspace, gdir, setup_gemini, gemini_record):
    setup_gemini()
    age_cache(gdir, 13 * 3600)
    creations = len(token_creations(workspace))
    proc, seen = launch(gemini_record)
    assert proc.returncode == 0, proc.stderr
    assert seen["env"]["GEMINI_API_KEY"] == cache_of(gdir)["token"]
    assert len(token_creations(workspace)) == creations
    assert proc.stderr == ""


def test_a_dead_session_stops_the_launch_with_the_sign_in_command(home, workspace, gdir, setup_gemini, gemini_record):
    setup_gemini()
    age_cache(gdir, 60)
    expire_cli_session(home, workspace)
    proc, seen = launch(gemini_record, "-p", "hi")
    assert seen is None
    assert proc.returncode == 1
    assert "databricks auth login --host %s --profile fake-profile" % workspace.url in proc.stderr


def test_a_dead_session_with_hours_left_on_the_token_starts_with_a_warning(home, workspace, gdir, setup_gemini,
                                                                         gemini_record):
    setup_gemini()
    cached = age_cache(gdir, 2 * 3600)
    expire_cli_session(home, workspace)
    proc, seen = launch(gemini_record, "-p", "hi")
    assert proc.returncode == 0, proc.stderr
    assert seen["env"]["GEMINI_API_KEY"] == cached["token"]
    assert "stops working at %s" % time.strftime("%H:%M", time.localtime(cached["expiry"])) in proc.stderr
    assert "databricks auth login --host %s --profile fake-profile" % workspace.url in proc.stderr


def test_a_missing_gemini_gets_the_install_command(home, workspace, setup_gemini, stub, gemini_record):
    setup_gemini()
    stub.unlink()
    proc, seen = launch(gemini_record, "-p", "hi", env={"PATH": os.pathsep.join([str(stub.parent), "/usr/bin", "/bin"])})
    assert seen is None
    assert proc.returncode == 1
    assert "npm install -g @google/gemini-cli" in proc.stderr


def test_no_install_says_how_to_set_one_up(home, stub, gemini_record):
    proc, seen = launch(gemini_record, "-p", "hi")
    assert seen is None
    assert proc.returncode == 1
    assert "fmapi setup --agent gemini" in proc.stderr


def test_a_model_changed_in_settings_is_what_gemini_is_started_with(home, workspace, gdir, setup_gemini,
                                                                    gemini_record):
    setup_gemini()
    settings = read_json(gdir / "settings.json")
    settings["model"]["name"] = "databricks-gemini-3-pro"
    (gdir / "settings.json").write_text(json.dumps(settings))
    proc, seen = launch(gemini_record)
    assert seen["env"]["GEMINI_MODEL"] == "databricks-gemini-3-pro"


# --- --write-env ------------------------------------------------------------------------


def test_write_env_keeps_a_token_for_a_bare_gemini_and_every_run_refreshes_it(home, workspace, gdir, setup_gemini,
                                                                              gemini_record):
    gdir.mkdir()
    theirs = "# my keys\nFOO=bar\nGEMINI_API_KEY=their-google-key"  # no final newline
    (gdir / ".env").write_text(theirs)
    os.chmod(gdir / ".env", 0o644)

    proc = setup_gemini("--write-env")
    assert "Run: fmapi gemini" in proc.stdout
    expiry = cache_of(gdir)["expiry"]
    assert "works until %s" % time.strftime("%Y-%m-%d %H:%M", time.localtime(expiry)) in proc.stdout
    env_file = gdir / ".env"
    assert mode_of(env_file) == 0o600
    text = env_file.read_text()
    assert text.startswith(theirs + "\n")  # the user's lines stay, in front
    values = dotenv(text)
    token = cache_of(gdir)["token"]
    assert values["GEMINI_API_KEY"] == token  # fmapi's lines come last, so they win
    assert values["FOO"] == "bar"
    assert values["GOOGLE_GEMINI_BASE_URL"] == workspace.url + "/serving-endpoints/gemini"
    assert values["GEMINI_API_KEY_AUTH_MECHANISM"] == "bearer"
    assert values["GEMINI_MODEL"] == "databricks-gemini-2-5-pro"
    assert values["GEMINI_CLI_CUSTOM_HEADERS"] == "x-databricks-use-coding-agent-mode: true"

    age_cache(gdir, 60)
    proc, seen = launch(gemini_record)
    assert proc.returncode == 0, proc.stderr
    new_token = cache_of(gdir)["token"]
    assert new_token != token
    assert dotenv(env_file.read_text())["GEMINI_API_KEY"] == new_token
    assert env_file.read_text().count("GEMINI_API_KEY=") == 2  # theirs and fmapi's, nothing piled up
    assert mode_of(env_file) == 0o600

    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert env_file.read_text() == theirs
    assert mode_of(env_file) == 0o644


def test_write_env_file_fmapi_created_is_removed_on_uninstall(home, workspace, gdir, setup_gemini):
    setup_gemini("--write-env")
    assert dotenv((gdir / ".env").read_text())["GEMINI_API_KEY"] == cache_of(gdir)["token"]
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (gdir / ".env").exists()


def test_write_env_is_kept_on_rerun_and_no_write_env_takes_it_out(home, workspace, gdir, setup_gemini,
                                                                     gemini_record):
    gdir.mkdir()
    theirs = "FOO=bar\n"
    (gdir / ".env").write_text(theirs)
    setup_gemini("--write-env")
    setup_gemini()  # a plain re-run keeps the choice
    assert dotenv((gdir / ".env").read_text())["GEMINI_API_KEY"] == cache_of(gdir)["token"]
    proc = setup_gemini("--no-write-env")
    assert (gdir / ".env").read_text() == theirs
    assert "works until" not in proc.stdout
    age_cache(gdir, 60)
    proc, seen = launch(gemini_record)  # a launch no longer writes the file either
    assert proc.returncode == 0, proc.stderr
    assert (gdir / ".env").read_text() == theirs


# --- uninstall --------------------------------------------------------------------------


def test_uninstall_gives_back_the_users_settings(home, workspace, gdir, setup_gemini):
    gdir.mkdir()
    (gdir / "settings.json").write_text(json.dumps(RICH_SETTINGS, indent=2))
    (gdir / "GEMINI.md").write_text("be brief\n")
    setup_gemini()
    setup_gemini("--model", "databricks-gemini-3-pro")  # a re-run must not forget the user's values
    token = cache_of(gdir)["token"]

    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Gemini CLI" in proc.stdout
    assert read_json(gdir / "settings.json") == RICH_SETTINGS
    assert sorted(os.listdir(gdir)) == ["GEMINI.md", "settings.json"]
    assert token in workspace.pat_values()  # not revoked unless asked


def test_uninstall_of_a_fresh_install_leaves_no_trace(home, workspace, gdir, setup_gemini):
    setup_gemini()
    proc = run_fmapi("uninstall", "--yes", "--revoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not gdir.exists()
    assert not workspace.pats_with_comment_prefix("Gemini CLI FMAPI")


def test_uninstall_keeps_a_value_the_user_changed_since(home, workspace, gdir, setup_gemini):
    gdir.mkdir()
    (gdir / "settings.json").write_text(json.dumps({"ui": {"theme": "GitHub"}}))
    setup_gemini()
    settings = read_json(gdir / "settings.json")
    settings["model"]["name"] = "my-own-endpoint"
    (gdir / "settings.json").write_text(json.dumps(settings))

    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_json(gdir / "settings.json") == {"ui": {"theme": "GitHub"}, "model": {"name": "my-own-endpoint"}}
    assert "model.name" in proc.stdout and "you changed it" in proc.stdout


def test_uninstall_finds_an_install_the_registry_lost(home, workspace, gdir, setup_gemini):
    gdir.mkdir()
    (gdir / "settings.json").write_text(json.dumps({"ui": {"theme": "GitHub"}}))
    setup_gemini("--write-env")
    (home / ".local" / "share" / "fmapi" / "installs.json").unlink()

    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Gemini CLI" in proc.stdout
    assert read_json(gdir / "settings.json") == {"ui": {"theme": "GitHub"}}
    assert sorted(os.listdir(gdir)) == ["settings.json"]


# --- on a terminal ----------------------------------------------------------------------


class Terminal:
    """fmapi in a pseudo-terminal: read what it shows, type like a person."""

    def __init__(self, args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["TERM"] = "xterm"  # a terminal that takes escape sequences, whatever runs the tests
            os.execv(sys.executable, [sys.executable, str(FMAPI)] + list(args))
        self.buffer = ""

    def _read(self, timeout):
        if select.select([self.fd], [], [], timeout)[0]:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            self.buffer += chunk.decode("utf-8", "replace")
            return bool(chunk)
        return True

    def expect(self, text, timeout=30):
        deadline = time.time() + timeout
        while text not in self.buffer:
            if time.time() > deadline or not self._read(deadline - time.time()):
                raise AssertionError("did not see %r; screen so far:\n%s" % (text, self.buffer))
        seen, self.buffer = self.buffer.split(text, 1)
        return seen

    def send(self, keys):
        os.write(self.fd, keys.encode())

    def finish(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("fmapi did not finish; screen:\n" + self.buffer)


def test_interactive_setup_offers_the_workspaces_gemini_endpoints(home, workspace, logged_in, stub, gdir,
                                                                  gemini_record):
    term = Terminal(["setup", "--agent", "gemini"])
    term.expect("Workspace URL")
    term.send(workspace.url + "\r")
    term.expect("CLI profile name")
    term.send(logged_in + "\r")
    term.expect("renewed through the Databricks CLI)")  # the Credential selector: PAT
    term.send("\r")
    term.expect("Model:")
    menu = term.expect("Other\u2026")
    assert menu.index("databricks-gemini-2-5-pro") < menu.index("databricks-gemini-3-pro")
    assert "claude" not in menu and "gpt" not in menu
    term.send("\x1b[B\r")  # the second: databricks-gemini-3-pro
    term.expect("PAT lifetime")
    term.expect("7 days")  # drawn once the selector reads keys
    term.send("\x1b[B\r")  # 3 days
    term.expect("Run: fmapi gemini")
    assert term.finish() == 0, term.buffer
    assert read_json(gdir / "settings.json")["model"]["name"] == "databricks-gemini-3-pro"
    assert 3 * 86400 - 120 < cache_of(gdir)["expiry"] - time.time() <= 3 * 86400

    term = Terminal(["gemini"])  # gemini gets the user's terminal itself, not pipes
    assert term.finish() == 0, term.buffer
    seen = read_json(gemini_record)
    assert seen["tty"] == [True, True, True]
    assert seen["env"]["GEMINI_MODEL"] == "databricks-gemini-3-pro"


# --- OAuth mode: gemini behind the relay (fmapi.py section 7b) ----------------------------

RELAY_STUB = """#!{python}
import json, os, sys, urllib.request
env = dict(os.environ)
url = env["GOOGLE_GEMINI_BASE_URL"] + "/v1beta/models/databricks-gemini-2-5-pro:generateContent"
request = urllib.request.Request(url, data=json.dumps({{"contents": []}}).encode(), method="POST",
                                 headers={{"Authorization": "Bearer " + env["GEMINI_API_KEY"]}})
try:
    with urllib.request.build_opener(urllib.request.ProxyHandler({{}})).open(request, timeout=20) as answer:
        status = answer.status
except urllib.error.HTTPError as exc:
    status = exc.code
mask = os.umask(0)
with open({record!r}, "w") as handle:
    json.dump({{"argv": sys.argv[1:], "env": env, "ppid": os.getppid(), "status": status, "umask": mask}}, handle)
sys.exit(int(env.get("GEMINI_STUB_EXIT", "0")))
"""


def test_oauth_mode_runs_gemini_behind_the_relay(home, workspace, gdir, setup_gemini, gemini_record, home_bin):
    setup_gemini("--auth", "oauth")
    assert not workspace.tokens  # no PAT
    make_stub(home_bin, "gemini", RELAY_STUB.format(python=sys.executable, record=str(gemini_record)))
    old = os.umask(0o022)
    try:
        proc, seen = launch(gemini_record, "-p", "hi", "--yolo", env={"GEMINI_STUB_EXIT": "41", "NO_PROXY": "corp.example"})
    finally:
        os.umask(old)
    assert proc.returncode == 41, proc.stderr  # gemini's exit status
    assert seen["argv"] == ["-p", "hi", "--yolo"] and seen["status"] == 200  # its request went through
    env = seen["env"]
    base = env["GOOGLE_GEMINI_BASE_URL"]
    assert base.startswith("http://127.0.0.1:") and base.count("/") == 2
    oauth = cache_of(gdir)["token"]
    assert workspace.credential_kind(oauth) == "oauth"
    assert env["GEMINI_API_KEY"] != oauth and workspace.credential_kind(env["GEMINI_API_KEY"]) is None
    assert oauth not in json.dumps(env) + proc.stdout + proc.stderr  # the token never reaches gemini
    assert env["NO_PROXY"] == "corp.example,127.0.0.1" and "127.0.0.1" in env["no_proxy"].split(",")
    assert seen["ppid"] != os.getpid() and seen["umask"] == 0o022  # fmapi stays, as the relay's host
    assert "new Gemini CLI token" not in proc.stderr
    (call,) = workspace.requests_to("/serving-endpoints/gemini/", "POST")
    assert call["headers"]["authorization"] == "Bearer " + oauth
    assert call["headers"]["x-databricks-use-coding-agent-mode"] == "true"
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):  # the relay ended with gemini
        socket.create_connection(("127.0.0.1", port), timeout=5)

