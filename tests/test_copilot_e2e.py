"""The real GitHub Copilot CLI (the pinned @github/copilot that tests/run.sh installs), set up by
`fmapi setup --agent copilot` and started as `fmapi copilot -p …`, offline, against the fake
workspace: Copilot runs fmapi's helper as its key command before every request, so the PAT fmapi
minted reaches the Responses or chat-completions route as a Bearer with the coding-agent header;
a stale PAT is renewed on the way; uninstall leaves Copilot's own files alone."""

import json
import os
import re
import time

import pytest

from agents import agent_binary
from conftest import cache_of, databricks_calls, expire_cached_pat, run_fmapi

REPLY = "Hello from the fake Databricks endpoint."
PROMPT = "Say hello in one short sentence."
# Copilot's own switches, in the test's environment only: no GitHub sign-in, telemetry or update.
QUIET = {"COPILOT_OFFLINE": "true", "COPILOT_AUTO_UPDATE": "false", "LANG": "C.UTF-8", "TERM": "dumb"}
ROUTES = {"databricks-gpt-5-2": "/serving-endpoints/responses",
          "databricks-claude-sonnet-4-6": "/serving-endpoints/chat/completions"}


@pytest.fixture
def copilot(home_bin):
    """The real copilot, on PATH for fmapi's dependency and version checks and for `fmapi copilot`."""
    path = agent_binary("copilot")
    (home_bin / "copilot").symlink_to(path)
    return path


def run_copilot(tmp_path):
    """`fmapi copilot -p PROMPT …` with stdin from /dev/null."""
    work = tmp_path / "copilot-work"
    work.mkdir(exist_ok=True)
    return run_fmapi("copilot", "-p", PROMPT, "--allow-all-tools", "-s", env=QUIET, timeout=180)


def show(proc, workspace):
    return "exit %s\nstdout:\n%s\nstderr:\n%s\nrequests: %s" % (
        proc.returncode, proc.stdout, proc.stderr[-4000:], [(r["method"], r["path"]) for r in workspace.requests])


def assert_answered_with(workspace, proc, pat, model):
    assert proc.returncode == 0, show(proc, workspace)
    assert REPLY in proc.stdout, show(proc, workspace)
    calls = [r for r in workspace.requests if r["path"].startswith("/serving-endpoints/")]
    assert calls and all(r["path"] == ROUTES[model] for r in calls), show(proc, workspace)
    for request in calls:
        assert request["headers"].get("authorization") == "Bearer " + pat
        assert request["headers"].get("x-databricks-use-coding-agent-mode") == "true"
        assert request["json"]["model"] == model
        assert request["json"].get("stream") is True
    assert PROMPT in json.dumps([r["json"] for r in calls])


@pytest.mark.parametrize("model", sorted(ROUTES))
def test_copilot_answers_with_the_pat_fmapi_minted_then_with_a_renewed_one(workspace, logged_in, home, copilot, tmp_path, model):
    workspace.reply_text = REPLY
    proc = run_fmapi("setup", "--agent", "copilot", "--yes", "--host", workspace.url, "--profile", logged_in,
                     "--model", model, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fmapi copilot" in proc.stdout and "COPILOT_PROVIDER_API_KEY_COMMAND" in proc.stdout
    copilot_home = home / ".copilot"
    pat = cache_of(copilot_home)["token"]
    assert re.fullmatch(r"Copilot CLI FMAPI \(created %s, #[0-9a-f]{8}\)" % time.strftime("%Y-%m-%d"),
                        workspace.find_pat(pat)["comment"])
    cli_calls = len(databricks_calls(tmp_path))
    workspace.clear_requests()

    proc = run_copilot(tmp_path)

    assert_answered_with(workspace, proc, pat, model)
    assert len(databricks_calls(tmp_path)) == cli_calls  # cache hits start no `databricks`
    assert not workspace.requests_to("/api/2.0/token/")  # ... and mint nothing

    old = expire_cached_pat(workspace, copilot_home)
    workspace.clear_requests()

    proc = run_copilot(tmp_path)

    new = cache_of(copilot_home)
    assert new["token"] != old["token"] and new["expiry"] > time.time() + 3600
    assert_answered_with(workspace, proc, new["token"], model)


def test_uninstall_removes_only_fmapis_files(workspace, logged_in, home, copilot, tmp_path):
    workspace.reply_text = REPLY
    assert run_fmapi("setup", "--agent", "copilot", "--yes", "--host", workspace.url, "--profile", logged_in,
                     timeout=120).returncode == 0
    assert_answered_with(workspace, run_copilot(tmp_path), cache_of(home / ".copilot")["token"], "databricks-gpt-5-2")
    theirs = sorted(p.name for p in (home / ".copilot").iterdir() if not p.name.startswith((".fmapi", "fmapi")))
    assert theirs  # Copilot keeps its own state there

    proc = run_fmapi("--uninstall", "--yes", "--revoke")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in (home / ".copilot").iterdir()) == theirs
    assert not workspace.pats_with_comment_prefix("Copilot CLI FMAPI")
    assert not os.path.exists(home / ".copilot" / "fmapi-key-helper.sh")
