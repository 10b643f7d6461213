"""The real Gemini CLI (the pinned @google/gemini-cli that tests/run.sh installs) set up by
fmapi and started with `fmapi gemini -p …`, offline, against the fake workspace."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from agents import agent_binary
from conftest import FAKEBIN, FMAPI

REPLY = "Hello from the fake Databricks Gemini endpoint."


def scrubbed_env(home, tmp_path, home_bin):
    """Only what the run needs: a temp HOME and TMPDIR, PATH with the fake databricks, gemini and node."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    node_dir = os.path.dirname(os.path.realpath(shutil.which("node")))
    return {
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PATH": os.pathsep.join([str(FAKEBIN), str(home_bin), node_dir, "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "BROWSER": "none",
        "FAKE_DATABRICKS_LOG": os.environ["FAKE_DATABRICKS_LOG"],
        "GEMINI_CLI_TRUST_WORKSPACE": "true",  # headless runs need the folder trusted
    }


def fmapi(env, *args, timeout=120):
    return subprocess.run([sys.executable, str(FMAPI), *args], stdin=subprocess.DEVNULL, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def prepared(home, workspace, home_bin, tmp_path):
    """The real gemini first on PATH, a scrubbed environment, and a user settings.json."""
    (home_bin / "gemini").symlink_to(agent_binary("gemini"))
    gdir = home / ".gemini"
    gdir.mkdir()
    (gdir / "settings.json").write_text(json.dumps({"privacy": {"usageStatisticsEnabled": False}}))
    workspace.reply_text = REPLY
    return scrubbed_env(home, tmp_path, home_bin), gdir


def test_real_gemini_answers_through_fmapi(workspace, logged_in, prepared):
    env, gdir = prepared

    setup = fmapi(env, "setup", "--agent", "gemini", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "Run: fmapi gemini" in setup.stdout
    token = json.loads((gdir / ".fmapi-pat-cache").read_text())["token"]

    proc = fmapi(env, "gemini", "-p", "Say hello in one sentence.")
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    assert REPLY in proc.stdout

    calls = [r for r in workspace.requests_to("/serving-endpoints/gemini/", "POST")
             if ":streamGenerateContent" in r["path"] or ":generateContent" in r["path"]]
    assert calls, [r["path"] for r in workspace.requests]
    for request in calls:
        assert request["headers"].get("authorization") == "Bearer " + token
        assert request["headers"].get("x-databricks-use-coding-agent-mode") == "true"
    assert any(r["path"] == "/serving-endpoints/gemini/v1beta/models/databricks-gemini-2-5-pro:streamGenerateContent"
               and r["query"].get("alt") == "sse" for r in calls), [r["path"] for r in calls]
    assert token not in proc.stdout + proc.stderr

    gone = fmapi(env, "uninstall", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert json.loads((gdir / "settings.json").read_text()) == {"privacy": {"usageStatisticsEnabled": False}}
    assert not (gdir / ".fmapi-pat-cache").exists()


def test_real_bare_gemini_works_with_write_env(workspace, logged_in, home_bin, prepared):
    env, gdir = prepared

    setup = fmapi(env, "setup", "--agent", "gemini", "--yes", "--host", workspace.url, "--profile", logged_in,
                  "--write-env")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    token = json.loads((gdir / ".fmapi-pat-cache").read_text())["token"]

    proc = subprocess.run([str(home_bin / "gemini"), "-p", "Say hello in one sentence."], stdin=subprocess.DEVNULL,
                          env=env, capture_output=True, text=True, timeout=120)  # no fmapi in between
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    assert REPLY in proc.stdout
    calls = workspace.requests_to("/serving-endpoints/gemini/v1beta/models/databricks-gemini-2-5-pro:", "POST")
    assert calls
    assert all(r["headers"].get("authorization") == "Bearer " + token for r in calls)
    assert all(r["headers"].get("x-databricks-use-coding-agent-mode") == "true" for r in calls)


def test_real_gemini_through_the_relay_outlives_its_token(workspace, prepared, tmp_path):
    """The relay alone, in front of the real gemini: a session whose first token expires mid-session
    goes on, because each request gets the token current at that moment (OAuth mode's 1-hour tokens,
    shortened to 1 s here)."""
    import threading

    import fmapi

    env, gdir = prepared
    (gdir / "settings.json").write_text(json.dumps({
        "privacy": {"usageStatisticsEnabled": False}, "security": {"auth": {"selectedType": "gemini-api-key"}},
        "model": {"name": "databricks-gemini-2-5-pro"}}))
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("x")
    # one tool call, answered slowly (the first token expires meanwhile), then the reply
    workspace.gemini_replies = [{"parts": [{"functionCall": {"name": "list_directory", "args": {"dir_path": "."}}}],
                                 "delay": 1.5}]
    workspace.stream_chunked = True
    given, lock = [], threading.Lock()

    def token_source():  # the first token lives 1 s from the first request on, the next ones an hour
        with lock:
            given.append(workspace.issue_oauth(lifetime=1 if not given else 3600)[0])
            return given[-1]

    with fmapi.Relay(workspace.url + "/serving-endpoints/gemini", token_source,
                     headers=[fmapi.CODING_AGENT_HEADER]) as relay:
        env.update(GOOGLE_GEMINI_BASE_URL=relay.url, GEMINI_API_KEY=relay.key, GEMINI_API_KEY_AUTH_MECHANISM="bearer",
                   GEMINI_MODEL="databricks-gemini-2-5-pro")
        proc = subprocess.run([str(agent_binary("gemini")), "-p", "List the files here, then say hello."],
                              stdin=subprocess.DEVNULL, env=env, cwd=str(tmp_path / "project"),
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    assert REPLY in proc.stdout
    calls = workspace.requests_to("/serving-endpoints/gemini/v1beta/models/databricks-gemini-2-5-pro:", "POST")
    assert len(calls) == 2, [r["path"] for r in calls]
    assert [r["headers"]["authorization"] for r in calls] == ["Bearer " + t for t in given]
    assert workspace.credential_kind(given[0]) is None  # the token the session started with had expired ...
    assert calls[1]["time"] > calls[0]["time"] + 1.5  # ... before its second request
    assert any("functionResponse" in part for part in calls[1]["json"]["contents"][-1]["parts"])
    assert all(r["headers"]["x-databricks-use-coding-agent-mode"] == "true" for r in calls)
    assert relay.key not in proc.stdout + proc.stderr


def test_real_gemini_in_oauth_mode_outlives_the_launch_token(workspace, prepared, home_bin, tmp_path):
    """`fmapi gemini -p` in OAuth mode: the real gemini reaches the workspace through the relay with
    OAuth access tokens as Bearer (no PAT exists), and its request after the launch token expired
    succeeds. Tokens live 10 s here (1 hour on a real workspace)."""
    env, gdir = prepared
    workspace.oauth_token_lifetime = 10
    from conftest import PROFILE

    login = subprocess.run([str(FAKEBIN / "databricks"), "auth", "login", "--host", workspace.url, "--profile", PROFILE],
                           stdin=subprocess.DEVNULL, env=env, capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    setup = fmapi(env, "setup", "--agent", "gemini", "--yes", "--auth", "oauth", "--host", workspace.url,
                  "--profile", PROFILE)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "relay on 127.0.0.1" in setup.stdout
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("x")
    # gemini asks for a tool, the answer takes 11 s (the launch token expires meanwhile), then the reply
    workspace.gemini_replies = [{"parts": [{"functionCall": {"name": "list_directory", "args": {"dir_path": "."}}}],
                                 "delay": 11}]
    workspace.stream_chunked = True
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # a proxy gemini must not use for the relay
    del env["NO_PROXY"], env["no_proxy"]
    proc = subprocess.run([sys.executable, str(FMAPI), "gemini", "-p", "List the files here, then say hello."],
                          stdin=subprocess.DEVNULL, env=env, cwd=str(tmp_path / "project"), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    assert REPLY in proc.stdout

    calls = workspace.requests_to("/serving-endpoints/gemini/v1beta/models/databricks-gemini-2-5-pro:", "POST")
    assert len(calls) == 2, [r["path"] for r in calls]
    bearers = [r["headers"]["authorization"][len("Bearer "):] for r in calls]
    assert all(b in workspace.oauth_access_tokens for b in bearers)  # OAuth access tokens ...
    assert not workspace.tokens and not workspace.requests_to("/api/2.0/token/")  # ... and no PAT anywhere
    launch = bearers[0]
    assert workspace.oauth_access_tokens[launch] < calls[1]["time"]  # the launch token had expired ...
    assert bearers[1] != launch  # ... so the relay renewed it, and the request succeeded
    assert all(r["headers"]["x-databricks-use-coding-agent-mode"] == "true" for r in calls)
    assert any("functionResponse" in part for part in calls[1]["json"]["contents"][-1]["parts"])
    for token in bearers:
        assert token not in proc.stdout + proc.stderr
