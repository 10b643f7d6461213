"""Section 6d (credentials) through setup, the helper and `fmapi token`: OAuth token mode, PAT-refusing
and lifetime-capping workspaces, switching modes (issue 11, parts 1 and 2)."""

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PROFILE, age_cache, cache_of, databricks_calls, make_stub, read_json, run_databricks, run_fmapi

CODEX_STUB = "#!/bin/sh\necho 'codex-cli 0.169.0'\n"


@pytest.fixture
def stubs(home_bin):
    make_stub(home_bin, "claude", "#!/bin/sh\necho '2.1.331 (Claude Code)'\n")
    make_stub(home_bin, "codex", CODEX_STUB)


def setup(workspace, *args, env=None):
    return run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", PROFILE, *args, env=env)


def helper(directory, env=None):
    return subprocess.run(["/bin/sh", "-c", str(Path(directory) / "fmapi-key-helper.sh")], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def registry(home):
    return read_json(home / ".local" / "share" / "fmapi" / "installs.json")["installs"]


def auth_token_calls(tmp_path):
    return [argv for argv in databricks_calls(tmp_path) if argv[:2] == ["auth", "token"]]


# --- OAuth mode ---------------------------------------------------------------------------


def test_oauth_mode_hands_claude_the_oauth_token_and_creates_no_pat(home, workspace, logged_in, stubs, tmp_path):
    proc = setup(workspace, "--auth", "oauth")
    assert proc.returncode == 0, proc.stderr
    assert "no PAT is created" in proc.stdout
    d = home / ".claude"
    cache = cache_of(d)
    assert workspace.credential_kind(cache["token"]) == "oauth" and cache["auth"] == "oauth"
    assert stat.S_IMODE((d / ".fmapi-pat-cache").stat().st_mode) == 0o600
    assert not workspace.tokens and not workspace.requests_to("/api/2.0/token/")
    env = read_json(d / "settings.json")["env"]
    assert env["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] == "900000"  # 15 min for a 1-hour token
    assert registry(home)[str(d)]["auth"] == "oauth"
    # a cache hit: the same token, no CLI process
    calls = len(databricks_calls(tmp_path))
    out = helper(d)
    assert out.returncode == 0 and out.stdout.strip() == cache["token"]
    assert run_fmapi("token").stdout.strip() == cache["token"]
    assert len(databricks_calls(tmp_path)) == calls
    status = run_fmapi("status").stdout
    assert "credential: OAuth access token" in status


def test_oauth_mode_for_codex(home, workspace, logged_in, stubs):
    proc = setup(workspace, "--agent", "codex", "--auth", "oauth")
    assert proc.returncode == 0, proc.stderr
    text = (home / ".codex" / "config.toml").read_text()
    assert "refresh_interval_ms = 900000" in text
    out = helper(home / ".codex")
    assert out.returncode == 0 and workspace.credential_kind(out.stdout.strip()) == "oauth"
    assert not workspace.tokens


@pytest.mark.parametrize("seconds_left, renews", [(900 + 300 - 60, True), (900 + 300 + 60, False)])
def test_an_oauth_token_is_handed_out_only_when_it_outlives_ttl_and_margin(home, workspace, logged_in, stubs,
                                                                           tmp_path, seconds_left, renews):
    assert setup(workspace, "--auth", "oauth").returncode == 0
    d = home / ".claude"
    old = age_cache(d, seconds_left)
    before = len(auth_token_calls(tmp_path))
    out = helper(d)
    assert out.returncode == 0, out.stderr
    assert (out.stdout.strip() != old["token"]) is renews
    calls = auth_token_calls(tmp_path)[before:]
    if renews:  # exactly one CLI process, which forces a fresh token
        assert calls == [["auth", "token", "-o", "json", "--force-refresh", "--profile", PROFILE]]
        assert workspace.credential_kind(out.stdout.strip()) == "oauth"
        assert cache_of(d)["expiry"] > time.time() + 3000
    else:
        assert calls == []


def test_concurrent_oauth_renewals_run_one_cli_process(home, workspace, logged_in, stubs, tmp_path):
    assert setup(workspace, "--auth", "oauth").returncode == 0
    d = home / ".claude"
    age_cache(d, 10)
    before = len(auth_token_calls(tmp_path))
    procs = [subprocess.Popen(["/bin/sh", "-c", str(d / "fmapi-key-helper.sh")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    assert len(auth_token_calls(tmp_path)) - before == 1


def test_a_cli_older_than_0_296_is_refused_with_an_upgrade_line(home, workspace, logged_in, stubs):
    proc = setup(workspace, "--auth", "oauth", env={"FAKE_DATABRICKS_VERSION": "0.295.0"})
    assert proc.returncode == 1
    assert "OAuth mode needs Databricks CLI 0.296.0 or newer" in proc.stderr and "0.295.0" in proc.stderr
    assert "brew upgrade databricks" in proc.stderr
    assert not (home / ".claude").exists()


def test_the_helper_never_hands_out_a_short_token_from_an_old_cli(home, workspace, logged_in, stubs, monkeypatch):
    assert setup(workspace, "--auth", "oauth").returncode == 0
    d = home / ".claude"
    old = age_cache(d, 200)  # under the margin: must be renewed
    monkeypatch.setenv("FAKE_DATABRICKS_VERSION", "0.280.0")  # downgraded since setup
    out = helper(d)
    assert out.stdout.strip() != old["token"] or out.returncode != 0
    assert "0.296.0" in out.stderr


def test_reruns_keep_oauth_and_auth_pat_switches_back(home, workspace, logged_in, stubs):
    assert setup(workspace, "--auth", "oauth").returncode == 0
    assert run_fmapi("setup", "--yes").returncode == 0
    assert registry(home)[str(home / ".claude")]["auth"] == "oauth" and not workspace.tokens
    proc = setup(workspace, "--auth", "pat")
    assert proc.returncode == 0, proc.stderr
    d = home / ".claude"
    assert cache_of(d)["token"] in workspace.pat_values()
    assert read_json(d / "settings.json")["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] == "3600000"
    assert "credential: personal access token (PAT, 1-day lifetime)" in run_fmapi("status").stdout


def test_switching_from_pat_to_oauth_revokes_the_installs_pat(home, workspace, logged_in, stubs):
    assert setup(workspace).returncode == 0
    d = home / ".claude"
    pat = cache_of(d)["token"]
    other = workspace.add_pat("Claude Code FMAPI (created 2026-01-01)")  # another machine's: kept
    proc = setup(workspace, "--auth", "oauth")
    assert proc.returncode == 0, proc.stderr
    assert pat not in workspace.pat_values()
    assert other["token_value"] in workspace.pat_values()
    assert workspace.credential_kind(cache_of(d)["token"]) == "oauth"


def test_a_shortened_oauth_lifetime_shortens_the_agents_ttl(home, workspace, stubs):
    workspace.oauth_token_lifetime = 120
    assert run_databricks("auth", "login", "--host", workspace.url, "--profile", PROFILE).returncode == 0
    assert setup(workspace, "--auth", "oauth", "--agent", "codex").returncode == 0
    assert "refresh_interval_ms = 30000" in (home / ".codex" / "config.toml").read_text()
    assert registry(home)[str(home / ".codex")]["token_lifetime"] == 120


# --- workspaces that refuse or limit PATs -----------------------------------------------


@pytest.mark.parametrize("knob", ["tokens_allowed", "tokens_enabled"])
def test_pat_refused_with_yes_switches_to_oauth_with_a_notice(home, workspace, logged_in, stubs, knob):
    setattr(workspace, knob, False)
    proc = setup(workspace)
    assert proc.returncode == 0, proc.stderr
    assert "does not let you create personal access tokens" in proc.stdout
    assert "switching this install to OAuth tokens" in proc.stdout
    assert registry(home)[str(home / ".claude")]["auth"] == "oauth"
    assert workspace.credential_kind(cache_of(home / ".claude")["token"]) == "oauth"


def test_pat_refused_even_when_workspace_conf_is_unreadable(home, workspace, logged_in, stubs):
    workspace.tokens_enabled = False
    workspace.workspace_conf_readable = False
    proc = setup(workspace)
    assert proc.returncode == 0, proc.stderr
    assert workspace.requests_to("/api/2.0/token/create")  # found out by the create call itself
    assert registry(home)[str(home / ".claude")]["auth"] == "oauth"


def test_pat_refused_with_explicit_auth_pat_stops_and_writes_nothing(home, workspace, logged_in, stubs):
    workspace.tokens_allowed = False
    proc = setup(workspace, "--auth", "pat")
    assert proc.returncode == 1
    assert "does not let you create personal access tokens (User does not have permission to use tokens.)" in proc.stderr
    assert "fmapi setup --auth oauth" in proc.stderr
    assert not (home / ".claude" / "settings.json").exists()
    assert not (home / ".local" / "share" / "fmapi" / "installs.json").exists()


@pytest.mark.parametrize("readable", [True, False])
def test_a_lifetime_above_the_workspace_maximum_is_lowered(home, workspace, logged_in, stubs, readable):
    workspace.max_token_lifetime_days = 3
    workspace.workspace_conf_readable = readable
    proc = setup(workspace, "--pat-lifetime", "7")
    assert proc.returncode == 0, proc.stderr
    assert "at most 3 days" in proc.stdout or "its maximum is 3 days" in proc.stdout
    info = workspace.find_pat(cache_of(home / ".claude")["token"])
    assert abs((info["expiry_time"] - info["creation_time"]) / 1000 - 3 * 86400) < 5
    assert registry(home)[str(home / ".claude")]["lifetime_days"] == 3
    assert "(PAT, 3-day lifetime)" in run_fmapi("status").stdout


def test_the_helper_of_a_pat_install_says_pats_were_disabled_and_how_to_switch(home, workspace, logged_in, stubs):
    assert setup(workspace, "--agent", "codex").returncode == 0
    workspace.tokens_enabled = False
    age_cache(home / ".codex", 10)
    out = helper(home / ".codex")
    assert out.returncode != 0 and out.stdout == ""
    assert "does not let you create personal access tokens" in out.stderr
    assert "fmapi setup --agent codex --auth oauth" in out.stderr
    assert "auth login" not in out.stderr and "expired" not in out.stderr


# --- the interactive questions ------------------------------------------------------------


def test_interactive_credential_selector_and_the_oauth_offer(home, workspace, logged_in, stubs):
    from test_claude import DOWN, ENTER, Terminal

    term = Terminal(["--host", workspace.url, "--profile", PROFILE, "--model", "m", "--opus", "o", "--sonnet", "s",
                     "--haiku", "h", "--settings-location", "home", "--skip-model-check"], cwd=os.getcwd())
    term.expect("Credential")
    term.expect("OAuth token (no PAT; 1-hour tokens renewed through the Databricks CLI)")
    term.send(DOWN + ENTER)
    assert term.finish() == 0, term.buffer
    assert "PAT lifetime" not in term.buffer  # asked only in PAT mode
    assert registry(home)[str(home / ".claude")]["auth"] == "oauth" and not workspace.tokens

    workspace.tokens_allowed = False
    term = Terminal(["--host", workspace.url, "--profile", PROFILE, "--model", "m", "--opus", "o", "--sonnet", "s",
                     "--haiku", "h", "--settings-location", "home", "--auth", "oauth", "--skip-model-check"], cwd=os.getcwd())
    assert term.finish() == 0, term.buffer  # --auth answers the selector
    registry_path = home / ".local" / "share" / "fmapi" / "installs.json"
    registry_path.unlink()  # a new install: PAT is the default again
    (home / ".claude" / ".fmapi-pat-cache").unlink()
    term = Terminal(["--host", workspace.url, "--profile", PROFILE, "--model", "m", "--opus", "o", "--sonnet", "s",
                     "--haiku", "h", "--settings-location", "home", "--skip-model-check"], cwd=os.getcwd())
    term.expect("Credential")
    term.send(ENTER)  # PAT
    term.expect("PAT lifetime")
    term.send(ENTER)
    term.expect("Use OAuth tokens instead")
    term.send(ENTER)  # yes, the default
    assert term.finish() == 0, term.buffer
    assert json.loads(registry_path.read_text())["installs"][str(home / ".claude")]["auth"] == "oauth"


# --- moving an install, uninstall --revoke ------------------------------------------------


@pytest.fixture
def second_workspace():
    from fakeworkspace import FakeWorkspace

    ws = FakeWorkspace().start()
    try:
        yield ws
    finally:
        ws.stop()


def test_moving_to_another_workspace_revokes_the_replaced_pat_through_the_old_profile(
        home, workspace, second_workspace, logged_in, stubs):
    assert run_databricks("auth", "login", "--host", second_workspace.url, "--profile", "ws2").returncode == 0
    assert setup(workspace).returncode == 0
    old = cache_of(home / ".claude")["token"]
    proc = run_fmapi("setup", "--yes", "--host", second_workspace.url, "--profile", "ws2")
    assert proc.returncode == 0, proc.stderr
    assert "revoked the PAT this install used on %s (profile %s)" % (workspace.url, PROFILE) in proc.stdout
    assert workspace.find_pat(old) is None  # revoked in the old workspace
    assert cache_of(home / ".claude")["token"] in second_workspace.pat_values()


def test_a_dead_old_session_says_which_pat_is_left_and_revoke_reaches_it_later(
        home, workspace, second_workspace, logged_in, stubs):
    from conftest import expire_cli_session

    assert setup(workspace).returncode == 0
    old = cache_of(home / ".claude")
    expire_cli_session(home, workspace)  # the old profile's session is dead
    assert run_databricks("auth", "login", "--host", second_workspace.url, "--profile", "ws2").returncode == 0
    proc = run_fmapi("setup", "--yes", "--host", second_workspace.url, "--profile", "ws2")
    assert proc.returncode == 0, proc.stderr
    assert "could not revoke the PAT this install used on %s (profile %s)" % (workspace.url, PROFILE) in proc.stderr
    assert "stays valid until %s" % time.strftime("%Y-%m-%d %H:%M", time.localtime(old["expiry"])) in proc.stderr
    assert workspace.find_pat(old["token"]) is not None
    # later: signed in again, `uninstall --revoke` reaches the old workspace too
    assert run_databricks("auth", "login", "--host", workspace.url, "--profile", PROFILE).returncode == 0
    out = run_fmapi("uninstall", "--yes", "--revoke")
    assert out.returncode == 0, out.stdout + out.stderr
    assert workspace.find_pat(old["token"]) is None
    assert not second_workspace.pats_with_comment_prefix("Claude Code FMAPI")


def test_uninstall_revoke_says_oauth_installs_have_nothing_to_revoke(home, workspace, logged_in, stubs, tmp_path):
    assert setup(workspace, "--auth", "oauth").returncode == 0
    other = workspace.add_pat("Claude Code FMAPI (created 2026-01-01)")
    before = len(databricks_calls(tmp_path))
    out = run_fmapi("uninstall", "--yes", "--revoke")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Nothing to revoke (OAuth mode, no PAT): Claude Code" in out.stdout
    assert "Kept:" not in out.stdout
    assert other["token_value"] in workspace.pat_values()  # not this install's to revoke
    assert len(databricks_calls(tmp_path)) == before
    assert not (home / ".claude").exists()


# --- fmapi reauth -------------------------------------------------------------------------


def test_reauth_signs_in_once_per_profile_and_proves_each_install(home, workspace, logged_in, stubs, tmp_path):
    from conftest import expire_cli_session

    assert setup(workspace).returncode == 0
    assert setup(workspace, "--agent", "codex", "--auth", "oauth").returncode == 0
    expire_cli_session(home, workspace)
    age_cache(home / ".claude", 10)
    age_cache(home / ".codex", 10)
    assert helper(home / ".codex").returncode != 0  # the session is dead: the agents cannot renew
    before = len(databricks_calls(tmp_path))

    proc = run_fmapi("reauth")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = databricks_calls(tmp_path)[before:]
    assert [c for c in calls if c[:2] == ["auth", "login"]] == [
        ["auth", "login", "--host", workspace.url, "--profile", PROFILE]]
    lines = [line for line in proc.stdout.splitlines() if ": OK, serves" in line]
    assert len(lines) == 2
    assert any(line.startswith("Claude Code (") and "a PAT valid until" in line for line in lines)
    assert any(line.startswith("OpenAI Codex (") and "an OAuth access token valid until" in line for line in lines)
    assert cache_of(home / ".claude")["token"] in workspace.pat_values()
    assert workspace.credential_kind(cache_of(home / ".codex")["token"]) == "oauth"

    only = run_fmapi("reauth", "--agent", "codex")
    assert only.returncode == 0 and "OpenAI Codex (" in only.stdout and "Claude Code (" not in only.stdout


def test_reauth_never_signs_in_over_a_profile_that_became_a_pat_profile(home, workspace, logged_in, stubs, tmp_path):
    assert setup(workspace).returncode == 0
    cfg = home / ".databrickscfg"
    cfg.write_text("[%s]\nhost = %s\ntoken = dapiMINE\n" % (PROFILE, workspace.url))
    before = len(databricks_calls(tmp_path))
    proc = run_fmapi("reauth")
    assert proc.returncode == 1
    assert "personal access token profile" in proc.stderr
    assert "Claude Code (" in proc.stdout and "not signed in" in proc.stdout
    assert [c for c in databricks_calls(tmp_path)[before:] if c[:2] == ["auth", "login"]] == []
    assert "token = dapiMINE" in cfg.read_text()


def test_reauth_without_installs(home):
    proc = run_fmapi("reauth", "--agent", "codex")
    assert proc.returncode == 1 and "Set one up first: fmapi setup --agent codex" in proc.stderr
