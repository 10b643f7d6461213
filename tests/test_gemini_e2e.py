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
