"""The real OpenCode (the pinned opencode-ai that tests/run.sh installs), set up by
`fmapi setup --agent opencode` and run as `opencode run …`, offline, against the fake workspace:
the plugin fmapi writes runs the helper before every request, so the PAT fmapi minted reaches each
family's route (through OpenCode's bundled AI SDKs) as a Bearer with the coding-agent header and
never the placeholder key; a stale PAT is renewed on the way; uninstall gives the user's
opencode.jsonc back, comments and all."""

import json
import os
import re
import subprocess
import time

import pytest

from agents import agent_binary
from conftest import cache_of, databricks_calls, expire_cached_pat, run_fmapi
from fakeworkspace import make_endpoint

REPLY = "Hello from the fake Databricks endpoint."
PROMPT = "Say hello in one short sentence."
KEEP = ("HOME", "PATH", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "FAKE_DATABRICKS_LOG",
        "BROWSER", "NO_PROXY", "no_proxy")
# OpenCode's own switches, for the test's runs only: no update check, model catalogue, LSP download
# or sharing; its background `npm install` of @opencode-ai/plugin into the config directory is kept
# offline (npm's own settings), so nothing leaves the machine.
QUIET = {"OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
         "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_SHARE": "1",
         "npm_config_offline": "true", "npm_config_registry": "http://127.0.0.1:9/"}
USER_CONFIG = """\
{
  "$schema": "https://opencode.ai/config.json",
  // my theme, keep it
  "theme": "tokyonight",
  "model": "anthropic/claude-sonnet-4-5", /* what I use at home */
  "provider": {
    "ollama": { "npm": "@ai-sdk/openai-compatible", "options": { "baseURL": "http://127.0.0.1:9/v1" } },
  },
}
"""
ROUTES = {
    "databricks-claude-sonnet-4-6": "/serving-endpoints/anthropic/v1/messages",
    "databricks-gpt-5-2": "/serving-endpoints/responses",
    "databricks-gemini-2-5-pro": "/serving-endpoints/gemini/v1beta/models/databricks-gemini-2-5-pro:streamGenerateContent",
    "databricks-gpt-oss-120b": "/serving-endpoints/chat/completions",  # not GPT-5: OpenAI chat completions
}


@pytest.fixture
def opencode(home_bin):
    path = agent_binary("opencode")
    (home_bin / "opencode").symlink_to(path)
    return path


@pytest.fixture
def config_dir(home):
    directory = home / ".config" / "opencode"
    directory.mkdir(parents=True)
    (directory / "opencode.jsonc").write_text(USER_CONFIG)
    return directory


def setup_opencode(workspace, logged_in, model):
    proc = run_fmapi("setup", "--agent", "opencode", "--yes", "--host", workspace.url, "--profile", logged_in,
                     "--model", model, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def run_opencode(opencode, tmp_path, timeout=180):
    work = tmp_path / "opencode-work"
    work.mkdir(exist_ok=True)
    env = {name: os.environ[name] for name in KEEP if name in os.environ}
    env.update(QUIET, LANG="C.UTF-8", TERM="dumb")
    return subprocess.run([opencode, "run", PROMPT], stdin=subprocess.DEVNULL, env=env, cwd=str(work),
                          capture_output=True, text=True, timeout=timeout)


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
        assert "set-by-the-fmapi-plugin" not in json.dumps(request["headers"])
        assert request["json"].get("model", model) == model  # Gemini names the model in the path
    assert PROMPT in json.dumps([r["json"] for r in calls])


@pytest.mark.parametrize("model", sorted(ROUTES))
def test_opencode_answers_with_the_pat_fmapi_minted_then_with_a_renewed_one(workspace, logged_in, config_dir, opencode,
                                                                          tmp_path, model):
    workspace.reply_text = REPLY
    workspace.serving_endpoints.append(make_endpoint("databricks-gpt-oss-120b", display_name="GPT OSS 120B"))
    setup_opencode(workspace, logged_in, model)
    pat = cache_of(config_dir)["token"]
    assert re.fullmatch(r"OpenCode FMAPI \(created %s, #[0-9a-f]{8}\)" % time.strftime("%Y-%m-%d"),
                        workspace.find_pat(pat)["comment"])
    cli_calls = len(databricks_calls(tmp_path))
    workspace.clear_requests()

    proc = run_opencode(opencode, tmp_path)

    assert_answered_with(workspace, proc, pat, model)
    assert len(databricks_calls(tmp_path)) == cli_calls
    assert not workspace.requests_to("/api/2.0/token/")

    old = expire_cached_pat(workspace, config_dir)
    workspace.clear_requests()

    proc = run_opencode(opencode, tmp_path)

    new = cache_of(config_dir)
    assert new["token"] != old["token"] and new["expiry"] > time.time() + 3600
    assert_answered_with(workspace, proc, new["token"], model)


def test_uninstall_gives_back_the_users_config(workspace, logged_in, config_dir, opencode, tmp_path):
    workspace.reply_text = REPLY
    setup_opencode(workspace, logged_in, "databricks-gpt-5-2")
    text = (config_dir / "opencode.jsonc").read_text()
    assert "// my theme, keep it" in text and "/* what I use at home */" in text and '"ollama"' in text
    assert_answered_with(workspace, run_opencode(opencode, tmp_path), cache_of(config_dir)["token"], "databricks-gpt-5-2")

    proc = run_fmapi("--uninstall", "--yes", "--revoke")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (config_dir / "opencode.jsonc").read_text() == USER_CONFIG
    assert not (config_dir / "plugins" / "fmapi-databricks.js").exists()
    assert not (config_dir / "fmapi-key-helper.sh").exists() and not (config_dir / ".fmapi-pat-cache").exists()
    assert not workspace.pats_with_comment_prefix("OpenCode FMAPI")


def test_dead_session_shows_the_sign_in_instruction(workspace, logged_in, home, config_dir, opencode, tmp_path):
    from conftest import expire_cli_session

    setup_opencode(workspace, logged_in, "databricks-gpt-5-2")
    expire_cached_pat(workspace, config_dir)
    expire_cli_session(home, workspace)
    workspace.clear_requests()

    proc = run_opencode(opencode, tmp_path)

    assert REPLY not in proc.stdout, show(proc, workspace)
    instruction = "databricks auth login --host %s --profile %s" % (workspace.url, logged_in)
    assert instruction in proc.stdout + proc.stderr, show(proc, workspace)  # the plugin's error, not a silent 401
    assert not workspace.requests_to("/serving-endpoints/")  # neither the placeholder nor a stale key went out
