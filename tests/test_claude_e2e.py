"""The real Claude Code (the pinned @anthropic-ai/claude-code that tests/run.sh installs), set up
by `fmapi setup` and run as `claude -p …`, offline, against the fake workspace: the PAT fmapi
minted reaches the model endpoint through the generated helper, a stale PAT is renewed on the
way, and a dead Databricks session shows the user how to sign in again."""

import json
import os
import subprocess
import time

import pytest

from agents import agent_binary
from conftest import cache_of, databricks_calls, expire_cached_pat, expire_cli_session, run_fmapi

MESSAGES = "/serving-endpoints/anthropic/v1/messages"
REPLY = "Hello from the fake Databricks Claude endpoint."
PROMPT = "Say hello in one short sentence."
MODELS = {  # all distinct, so the request shows which one Claude Code asked for
    "--model": "databricks-claude-sonnet-4-5",
    "--opus": "databricks-claude-opus-4-6",
    "--sonnet": "databricks-claude-sonnet-4-6",
    "--haiku": "databricks-claude-haiku-4-5",
}
# What a run keeps from the test's (already scrubbed, temp-HOME) environment; nothing else.
KEEP = ("HOME", "PATH", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "FAKE_DATABRICKS_LOG",
        "BROWSER", "NO_PROXY", "no_proxy")


@pytest.fixture
def claude(home_bin):
    """The real claude, also on PATH for fmapi's dependency check."""
    path = agent_binary("claude")
    (home_bin / "claude").symlink_to(path)
    return path


@pytest.fixture
def installed(home, workspace, logged_in, claude):
    """`fmapi setup --yes` for Claude Code into ~/.claude; returns that directory."""
    workspace.reply_text = REPLY
    args = [item for pair in MODELS.items() for item in pair]
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, *args, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home / ".claude"


def run_claude(claude, tmp_path, prompt=PROMPT, timeout=120, **extra):
    """`claude -p PROMPT` with stdin from /dev/null and only the variables it needs."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {name: os.environ[name] for name in KEEP if name in os.environ}
    env.update(LANG="C.UTF-8", TERM="dumb", TMPDIR=str(tmp), CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    env.update(extra)
    return subprocess.run([claude, "-p", prompt], stdin=subprocess.DEVNULL, env=env, capture_output=True,
                          text=True, timeout=timeout)




def model_calls(workspace):
    return workspace.requests_to(MESSAGES, "POST")


def show(proc, workspace):
    return "exit %s\nstdout:\n%s\nstderr:\n%s\nrequests: %s" % (
        proc.returncode, proc.stdout, proc.stderr, [(r["method"], r["path"]) for r in workspace.requests])


def assert_answered_with(workspace, proc, pat):
    """claude printed the reply, and every model call carried ``pat`` and the coding-agent header."""
    assert proc.returncode == 0, show(proc, workspace)
    assert REPLY in proc.stdout, show(proc, workspace)
    calls = model_calls(workspace)
    assert calls, show(proc, workspace)
    for request in calls:
        assert request["headers"].get("authorization") == "Bearer " + pat
        assert request["headers"].get("x-databricks-use-coding-agent-mode") == "true"
    prompted = [r for r in calls if PROMPT in json.dumps(r["json"].get("messages"))]
    assert prompted, [r["json"] for r in calls]
    for request in prompted:
        assert request["json"]["model"] == MODELS["--model"]
        assert request["json"].get("stream") is True


def test_claude_answers_with_the_pat_fmapi_minted(workspace, installed, claude, tmp_path):
    pat = cache_of(installed)["token"]
    info = workspace.find_pat(pat)
    assert info["comment"].startswith("Claude Code FMAPI (created ")
    assert info["created_by_bearer"] in workspace.oauth_access_tokens  # minted with the OAuth session
    cli_calls = len(databricks_calls(tmp_path))
    workspace.clear_requests()

    proc = run_claude(claude, tmp_path)

    assert_answered_with(workspace, proc, pat)
    assert len(databricks_calls(tmp_path)) == cli_calls  # a cache hit starts no `databricks`
    assert not workspace.requests_to("/api/2.0/token/")  # ... and mints nothing


def test_claude_gets_a_fresh_pat_after_the_cached_one_expired(workspace, installed, claude, tmp_path):
    old = expire_cached_pat(workspace, installed)
    workspace.clear_requests()

    proc = run_claude(claude, tmp_path)

    new = cache_of(installed)
    assert new["token"] != old["token"] and new["expiry"] > time.time() + 3600
    assert_answered_with(workspace, proc, new["token"])
    assert {p["token_value"] for p in workspace.pats_with_comment_prefix("Claude Code FMAPI")} == {new["token"]}
    deadline = time.time() + 10  # the replaced PAT is revoked in the background
    while workspace.find_pat(old["token"]) is not None and time.time() < deadline:
        time.sleep(0.05)
    assert workspace.find_pat(old["token"]) is None


def test_dead_session_shows_the_sign_in_instruction(workspace, installed, claude, home, logged_in, tmp_path):
    old = expire_cached_pat(workspace, installed)
    expire_cli_session(home, workspace)
    workspace.clear_requests()

    proc = run_claude(claude, tmp_path, CLAUDE_CODE_MAX_RETRIES="0")  # a persistent 401 retries for minutes

    assert proc.returncode != 0, show(proc, workspace)
    assert REPLY not in proc.stdout
    instruction = "databricks auth login --host %s --profile %s" % (workspace.url, logged_in)
    assert instruction in proc.stdout + proc.stderr, show(proc, workspace)  # not a silent failure
    for request in model_calls(workspace):  # neither the stale PAT nor any other credential went out
        assert request["headers"].get("authorization", "").strip() in ("", "Bearer")
    assert not workspace.requests_to("/api/2.0/token/create")
    assert cache_of(installed)["token"] == old["token"]


def test_users_headers_reach_the_workspace_beside_fmapis_from_a_bom_file(home, workspace, logged_in, claude, tmp_path):
    """Issue 12: a settings.json saved with a byte-order mark holding the user's own headers (several
    lines, anthropics/claude-code#1859) stays theirs, and every model call carries them and fmapi's."""
    workspace.reply_text = REPLY
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: data-eng\nX-Cost-Center: 1234"}}).encode())
    args = [item for pair in MODELS.items() for item in pair]
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, *args, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (d / "settings.json").read_bytes().startswith(b"\xef\xbb\xbf")
    workspace.clear_requests()

    proc = run_claude(claude, tmp_path)

    assert_answered_with(workspace, proc, cache_of(d)["token"])
    for request in model_calls(workspace):
        assert request["headers"].get("x-team") == "data-eng"
        assert request["headers"].get("x-cost-center") == "1234"


def test_claude_recovers_by_itself_from_a_pat_revoked_in_the_workspace(workspace, installed, claude, tmp_path):
    """An admin (or `fmapi --uninstall --revoke` elsewhere) revoked the cached PAT: the workspace
    answers 403 "Invalid access token.", Claude Code asks the helper again, the helper checks the
    PAT, replaces it, and the same `claude -p` run answers; no user action."""
    old = cache_of(installed)
    assert workspace.revoke_pat(old["token"])
    workspace.clear_requests()

    proc = run_claude(claude, tmp_path)

    new = cache_of(installed)
    assert proc.returncode == 0 and REPLY in proc.stdout, show(proc, workspace)
    assert new["token"] != old["token"]
    calls = model_calls(workspace)
    refused = [r for r in calls if r["headers"].get("authorization") == "Bearer " + old["token"]]
    assert len(refused) <= 1, show(proc, workspace)
    assert calls[-1]["headers"].get("authorization") == "Bearer " + new["token"]
    assert len(workspace.requests_to("/api/2.0/token/create")) == 1


def test_project_install_in_a_git_work_tree_answers_from_settings_local(home, workspace, logged_in, claude, tmp_path):
    """Issue 12: in a git project fmapi writes .claude/settings.local.json; the real claude started in
    the project uses it (helper, base URL, model), and `git status` stays clean."""
    workspace.reply_text = REPLY
    project = tmp_path / "proj"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    args = [item for pair in MODELS.items() for item in pair]
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, *args,
                     "--settings-location", str(project), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / ".claude" / "settings.local.json").exists()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project,
                            capture_output=True, text=True, check=True)
    assert status.stdout == ""
    workspace.clear_requests()

    run = run_claude_in(claude, tmp_path, project)

    pat = json.loads(next((home / ".local" / "share" / "fmapi" / "project-caches").iterdir()).joinpath(
        ".fmapi-pat-cache").read_text())["token"]
    assert_answered_with(workspace, run, pat)


def run_claude_in(claude, tmp_path, cwd, timeout=120):
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {name: os.environ[name] for name in KEEP if name in os.environ}
    env.update(LANG="C.UTF-8", TERM="dumb", TMPDIR=str(tmp), CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    return subprocess.run([claude, "-p", PROMPT], stdin=subprocess.DEVNULL, env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(cwd))
