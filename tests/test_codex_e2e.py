"""The real OpenAI Codex (the pinned @openai/codex that tests/run.sh installs), set up by
`fmapi setup --agent codex` and run as `codex exec …`, offline, against the fake workspace: the
PAT fmapi minted reaches the Responses endpoint through the command-backed auth helper, a stale
PAT is renewed on the way, a dead Databricks session shows the user how to sign in again, and
uninstall gives the user's config.toml back."""

import json
import os
import re
import subprocess
import time

import pytest

from agents import agent_binary
from conftest import cache_of, databricks_calls, expire_cached_pat, expire_cli_session, run_fmapi

RESPONSES = "/serving-endpoints/responses"
REPLY = "Hello from the fake Databricks GPT endpoint."
PROMPT = "Say hello in one short sentence."
MODEL = "databricks-gpt-5-2-codex"
# What a run keeps from the test's (already scrubbed, temp-HOME) environment; nothing else.
KEEP = ("HOME", "PATH", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "FAKE_DATABRICKS_LOG",
        "BROWSER", "NO_PROXY", "no_proxy")
# Telemetry and plugin lookups off for the test's runs, on the command line: fmapi's file stays the user's.
QUIET = ("-c", "analytics.enabled=false", "-c", "features.plugins=false")
NO_RETRIES = ("-c", "model_providers.databricks-fmapi.request_max_retries=0",
              "-c", "model_providers.databricks-fmapi.stream_max_retries=0")
USER_CONFIG = """\
# my Codex settings
model = "gpt-5.5"  # what I use with my OpenAI account
approval_policy = "on-request"

[model_providers.mine]
name = "Mine"
base_url = "http://127.0.0.1:9/v1"
wire_api = "responses"
"""


@pytest.fixture
def codex(home_bin):
    """The real codex, also on PATH for fmapi's dependency and version checks."""
    path = agent_binary("codex")
    (home_bin / "codex").symlink_to(path)
    return path


@pytest.fixture
def installed(home, workspace, logged_in, codex):
    """A user's config.toml, then `fmapi setup --agent codex --yes`; returns ~/.codex."""
    workspace.reply_text = REPLY
    codex_home = home / ".codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(USER_CONFIG)
    proc = run_fmapi("setup", "--agent", "codex", "--yes", "--host", workspace.url, "--profile", logged_in,
                     "--model", MODEL, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'codex exec "' in proc.stdout
    return codex_home


def run_codex(codex, tmp_path, *options, prompt=PROMPT, timeout=120):
    """`codex exec PROMPT` with stdin from /dev/null (an open stdin makes it wait forever)."""
    work = tmp_path / "codex-work"
    work.mkdir(exist_ok=True)
    env = {name: os.environ[name] for name in KEEP if name in os.environ}
    env.update(LANG="C.UTF-8", TERM="dumb", RUST_LOG="error")
    command = [codex, "exec", "--skip-git-repo-check", "--sandbox", "read-only", *QUIET, *options, prompt]
    return subprocess.run(command, stdin=subprocess.DEVNULL, env=env, cwd=str(work), capture_output=True,
                          text=True, timeout=timeout)




def show(proc, workspace):
    return "exit %s\nstdout:\n%s\nstderr:\n%s\nrequests: %s" % (
        proc.returncode, proc.stdout, proc.stderr[-4000:], [(r["method"], r["path"]) for r in workspace.requests])


def assert_answered_with(workspace, proc, pat):
    """codex printed the reply; every Responses call carried ``pat``, the header and the model."""
    assert proc.returncode == 0, show(proc, workspace)
    assert REPLY in proc.stdout, show(proc, workspace)
    calls = workspace.requests_to(RESPONSES, "POST")
    assert calls, show(proc, workspace)
    for request in calls:
        assert request["headers"].get("authorization") == "Bearer " + pat
        assert request["headers"].get("x-databricks-use-coding-agent-mode") == "true"
        assert request["json"]["model"] == MODEL
        assert request["json"].get("stream") is True
    assert PROMPT in json.dumps([r["json"].get("input") for r in calls])
    for request in workspace.requests_to("/serving-endpoints/models"):  # the catalogue lookup, when made
        assert request["headers"].get("authorization") == "Bearer " + pat


def test_codex_exec_answers_with_the_pat_fmapi_minted(workspace, installed, codex, tmp_path):
    pat = cache_of(installed)["token"]
    info = workspace.find_pat(pat)
    assert re.fullmatch(r"Codex FMAPI \(created %s, #[0-9a-f]{8}\)" % time.strftime("%Y-%m-%d"), info["comment"])
    cli_calls = len(databricks_calls(tmp_path))
    workspace.clear_requests()

    proc = run_codex(codex, tmp_path)

    assert_answered_with(workspace, proc, pat)
    assert len(databricks_calls(tmp_path)) == cli_calls  # a cache hit starts no `databricks`
    assert not workspace.requests_to("/api/2.0/token/")  # ... and mints nothing


def test_codex_gets_a_fresh_pat_after_the_cached_one_expired(workspace, installed, codex, tmp_path):
    old = expire_cached_pat(workspace, installed)
    workspace.clear_requests()

    proc = run_codex(codex, tmp_path)

    new = cache_of(installed)
    assert new["token"] != old["token"] and new["expiry"] > time.time() + 3600
    assert_answered_with(workspace, proc, new["token"])
    assert {p["token_value"] for p in workspace.pats_with_comment_prefix("Codex FMAPI")} == {new["token"]}


def test_dead_session_shows_the_sign_in_instruction(workspace, installed, codex, home, logged_in, tmp_path):
    expire_cached_pat(workspace, installed)
    expire_cli_session(home, workspace)
    workspace.clear_requests()

    proc = run_codex(codex, tmp_path, *NO_RETRIES, timeout=180)

    assert proc.returncode != 0, show(proc, workspace)
    assert REPLY not in proc.stdout
    instruction = "databricks auth login --host %s --profile %s" % (workspace.url, logged_in)
    assert instruction in proc.stdout + proc.stderr, show(proc, workspace)  # not a silent failure
    for request in workspace.requests_to(RESPONSES):  # no stale or foreign credential went out
        assert request["headers"].get("authorization", "").strip() in ("", "Bearer")
    assert not workspace.requests_to("/api/2.0/token/create")


def test_uninstall_gives_back_the_users_config(workspace, installed, codex, tmp_path):
    assert_answered_with(workspace, run_codex(codex, tmp_path), cache_of(installed)["token"])

    proc = run_fmapi("--uninstall", "--yes", "--revoke")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (installed / "config.toml").read_text() == USER_CONFIG
    assert not (installed / "fmapi-key-helper.sh").exists() and not (installed / ".fmapi-pat-cache").exists()
    assert not workspace.pats_with_comment_prefix("Codex FMAPI")


def test_a_config_with_a_byte_order_mark_works_and_comes_back(home, workspace, logged_in, codex, tmp_path):
    """Issue 12: a config.toml saved with a UTF-8 BOM and CRLF (Windows editors) is merged, the real
    codex answers through it, and uninstall gives back every byte."""
    workspace.reply_text = REPLY
    original = b"\xef\xbb\xbf" + USER_CONFIG.replace("\n", "\r\n").encode()
    codex_home = home / ".codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_bytes(original)
    proc = run_fmapi("setup", "--agent", "codex", "--yes", "--host", workspace.url, "--profile", logged_in,
                     "--model", MODEL, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (codex_home / "config.toml").read_bytes().startswith(b"\xef\xbb\xbf")
    workspace.clear_requests()

    assert_answered_with(workspace, run_codex(codex, tmp_path), cache_of(codex_home)["token"])

    assert run_fmapi("--uninstall", "--yes").returncode == 0
    assert (codex_home / "config.toml").read_bytes() == original


def test_codex_recovers_on_the_next_run_from_a_pat_revoked_in_the_workspace(workspace, installed, codex, tmp_path):
    """The cached PAT was revoked in the workspace. Codex 0.169.0 does not re-run its auth command
    on 403 (what the workspace answers a dead PAT), so this run fails after one refused request
    (retries off); the next run, started right after, asks the helper again, which checks the PAT,
    replaces it, and that run answers. README says so, with the recovery command."""
    old = cache_of(installed)
    assert workspace.revoke_pat(old["token"])
    workspace.clear_requests()

    first = run_codex(codex, tmp_path, *NO_RETRIES, timeout=180)

    assert first.returncode != 0 and "403" in first.stdout + first.stderr, show(first, workspace)
    refused = workspace.requests_to(RESPONSES, "POST")
    assert len(refused) == 1 and refused[0]["headers"].get("authorization") == "Bearer " + old["token"]
    workspace.clear_requests()

    second = run_codex(codex, tmp_path)

    new = cache_of(installed)
    assert new["token"] != old["token"]
    assert_answered_with(workspace, second, new["token"])
    assert len(workspace.requests_to("/api/2.0/token/create")) == 1
