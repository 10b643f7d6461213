"""The real Pi (the pinned @earendil-works/pi-coding-agent that tests/run.sh installs, on the
pinned Node.js it needs), set up by `fmapi setup --agent pi` and run as `pi -p …`, offline,
against the fake workspace: Pi runs fmapi's helper before every request (models.json
"!command"), so the PAT fmapi minted reaches each family's route as a Bearer with the
coding-agent header; a stale PAT is renewed on the way; uninstall gives the user's models.json
(comments and all) and settings.json back."""

import json
import os
import re
import subprocess
import time

import pytest

from agents import agent_binary
from conftest import cache_of, databricks_calls, expire_cached_pat, run_fmapi

REPLY = "Hello from the fake Databricks endpoint."
PROMPT = "Say hello in one short sentence."
# What a run keeps from the test's (already scrubbed, temp-HOME) environment; nothing else.
KEEP = ("HOME", "PATH", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "FAKE_DATABRICKS_LOG",
        "BROWSER", "NO_PROXY", "no_proxy")
# Pi's own switches, for the test's runs only: no catalogue refresh, version check or telemetry.
QUIET = {"PI_OFFLINE": "1", "PI_SKIP_VERSION_CHECK": "1", "PI_TELEMETRY": "0"}
USER_MODELS = """\
{
  // my local models
  "providers": {
    "ollama": {
      "baseUrl": "http://127.0.0.1:9/v1",
      "api": "openai-completions",
      "apiKey": "ollama",
      "models": [{ "id": "qwen2.5-coder:7b" }],
    },
  },
}
"""
USER_SETTINGS = '{\n  "defaultProvider": "ollama",\n  "defaultModel": "qwen2.5-coder:7b",\n  "theme": "dark"\n}\n'
ROUTES = {
    "databricks-claude-sonnet-4-6": "/serving-endpoints/anthropic/v1/messages",
    "databricks-gpt-5-2": "/serving-endpoints/responses",
    "databricks-gemini-2-5-pro": "/serving-endpoints/gemini/v1beta/models/databricks-gemini-2-5-pro:streamGenerateContent",
}


@pytest.fixture
def pi(home_bin):
    """The real pi, and the Node.js it needs, on PATH (fmapi's version check runs them too)."""
    path = agent_binary("pi")
    (home_bin / "pi").symlink_to(path)
    (home_bin / "node").symlink_to(agent_binary("node"))
    return path


def setup_pi(workspace, logged_in, model, *extra):
    proc = run_fmapi("setup", "--agent", "pi", "--yes", "--host", workspace.url, "--profile", logged_in,
                     "--model", model, *extra, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def agent_dir(home):
    """The user's Pi directory with their own models.json and settings.json."""
    directory = home / ".pi" / "agent"
    directory.mkdir(parents=True)
    (directory / "models.json").write_text(USER_MODELS)
    (directory / "settings.json").write_text(USER_SETTINGS)
    return directory


def run_pi(pi, tmp_path, timeout=120):
    """`pi -p PROMPT` with stdin from /dev/null, in a scrubbed environment."""
    work = tmp_path / "pi-work"
    work.mkdir(exist_ok=True)
    env = {name: os.environ[name] for name in KEEP if name in os.environ}
    env.update(QUIET, LANG="C.UTF-8", TERM="dumb")
    return subprocess.run([pi, "-p", PROMPT], stdin=subprocess.DEVNULL, env=env, cwd=str(work),
                          capture_output=True, text=True, timeout=timeout)


def show(proc, workspace):
    return "exit %s\nstdout:\n%s\nstderr:\n%s\nrequests: %s" % (
        proc.returncode, proc.stdout, proc.stderr[-4000:], [(r["method"], r["path"]) for r in workspace.requests])


def assert_answered_with(workspace, proc, pat, model):
    """pi printed the reply; every model call carried ``pat`` as a Bearer, the header and the model."""
    assert proc.returncode == 0, show(proc, workspace)
    assert REPLY in proc.stdout, show(proc, workspace)
    calls = [r for r in workspace.requests if r["path"].startswith("/serving-endpoints/")]
    assert calls and all(r["path"] == ROUTES[model] for r in calls), show(proc, workspace)
    for request in calls:
        assert request["headers"].get("authorization") == "Bearer " + pat
        assert request["headers"].get("x-databricks-use-coding-agent-mode") == "true"
        assert request["json"].get("model", model) == model  # Gemini names the model in the path
    assert PROMPT in json.dumps([r["json"] for r in calls])


@pytest.mark.parametrize("model", sorted(ROUTES))
def test_pi_answers_with_the_pat_fmapi_minted_then_with_a_renewed_one(workspace, logged_in, agent_dir, pi, tmp_path, model):
    workspace.reply_text = REPLY
    setup_pi(workspace, logged_in, model)
    pat = cache_of(agent_dir)["token"]
    assert re.fullmatch(r"Pi FMAPI \(created %s, #[0-9a-f]{8}\)" % time.strftime("%Y-%m-%d"), workspace.find_pat(pat)["comment"])
    cli_calls = len(databricks_calls(tmp_path))
    workspace.clear_requests()

    proc = run_pi(pi, tmp_path)

    assert_answered_with(workspace, proc, pat, model)
    assert len(databricks_calls(tmp_path)) == cli_calls  # a cache hit starts no `databricks`
    assert not workspace.requests_to("/api/2.0/token/")  # ... and mints nothing

    old = expire_cached_pat(workspace, agent_dir)
    workspace.clear_requests()

    proc = run_pi(pi, tmp_path)

    new = cache_of(agent_dir)
    assert new["token"] != old["token"] and new["expiry"] > time.time() + 3600
    assert_answered_with(workspace, proc, new["token"], model)


def test_uninstall_gives_back_the_users_files(workspace, logged_in, agent_dir, pi, tmp_path):
    workspace.reply_text = REPLY
    setup_pi(workspace, logged_in, "databricks-claude-sonnet-4-6")
    models = (agent_dir / "models.json").read_text()
    assert "// my local models" in models and '"ollama"' in models  # merged, not rewritten
    assert_answered_with(workspace, run_pi(pi, tmp_path), cache_of(agent_dir)["token"], "databricks-claude-sonnet-4-6")

    proc = run_fmapi("--uninstall", "--yes", "--revoke")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (agent_dir / "models.json").read_text() == USER_MODELS
    assert (agent_dir / "settings.json").read_text() == USER_SETTINGS
    assert not (agent_dir / "fmapi-key-helper.sh").exists() and not (agent_dir / ".fmapi-pat-cache").exists()
    assert not workspace.pats_with_comment_prefix("Pi FMAPI")


def test_dead_session_fails_visibly_and_fmapi_token_says_what_to_run(workspace, logged_in, home, agent_dir, pi, tmp_path):
    from conftest import expire_cli_session

    setup_pi(workspace, logged_in, "databricks-gpt-5-2")
    expire_cached_pat(workspace, agent_dir)
    expire_cli_session(home, workspace)
    workspace.clear_requests()

    proc = run_pi(pi, tmp_path)

    assert proc.returncode != 0 and REPLY not in proc.stdout, show(proc, workspace)
    assert 'Failed to resolve API key for provider "databricks-fmapi"' in proc.stdout + proc.stderr, show(proc, workspace)
    assert not workspace.requests_to("/serving-endpoints/")  # no stale or foreign key went out
    token = run_fmapi("token", "--agent", "pi")
    assert token.returncode != 0 and token.stdout == ""
    assert "databricks auth login --host %s --profile %s" % (workspace.url, logged_in) in token.stderr


def test_oauth_mode_pi_sends_the_profiles_oauth_token_then_a_refreshed_one(workspace, logged_in, agent_dir, pi, tmp_path):
    """`--auth oauth` (issue 11): the same helper serves the profile's OAuth access token; Pi needs nothing else."""
    from conftest import age_cache

    model = "databricks-claude-sonnet-4-6"
    workspace.reply_text = REPLY
    setup_pi(workspace, logged_in, model, "--auth", "oauth")
    first = cache_of(agent_dir)["token"]
    assert workspace.credential_kind(first) == "oauth" and not workspace.tokens  # no PAT at all
    workspace.clear_requests()

    assert_answered_with(workspace, run_pi(pi, tmp_path), first, model)

    age_cache(agent_dir, 10)  # the cached access token is about to expire
    workspace.clear_requests()
    proc = run_pi(pi, tmp_path)

    second = cache_of(agent_dir)["token"]
    assert second != first and workspace.credential_kind(second) == "oauth"
    assert_answered_with(workspace, proc, second, model)
    assert not workspace.tokens
