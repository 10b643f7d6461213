"""Shared fixtures and helpers for fmapi's tests.

Fixtures: ``home_bin``, ``home``, ``workspace``, ``logged_in``.
Helpers (import with ``from conftest import …``): ``FMAPI``, ``REPO_ROOT``, ``FAKEBIN``,
``FAKE_DATABRICKS``, ``run_fmapi``, ``run_databricks``, ``expire_cli_session``,
``databricks_calls``, ``make_stub``, ``cli_token_cache``.

Every test that runs fmapi or the fake CLI must use ``home``: it gives the test its own HOME,
XDG dirs, PATH (fake ``databricks`` first) and a scrubbed environment, so nothing touches the real
user's files or credentials.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FMAPI = REPO_ROOT / "fmapi.py"
FAKEBIN = TESTS_DIR / "fakebin"
FAKE_DATABRICKS = FAKEBIN / "databricks"
PROFILE = "fake-profile"
CALL_LOG_NAME = "databricks-calls.log"

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fakeworkspace import FakeWorkspace  # noqa: E402

# Environment variables that could leak the real user's agent/Databricks setup into a test.
_SCRUB_PREFIXES = ("ANTHROPIC_", "GEMINI_", "GOOGLE_", "DATABRICKS_", "OPENAI_", "CODEX_",
                   "CLAUDE_CODE_", "FAKE_DATABRICKS_")
_SCRUB_NAMES = ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME", "CLAUDECODE",
                "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_DIRS", "XDG_DATA_DIRS")


def _ensure_executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


_ensure_executable(FAKE_DATABRICKS)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _never_the_real_home(tmp_path, monkeypatch):
    """Every test, even one that does not ask for ``home``, runs with a temporary HOME."""
    isolated = tmp_path / "isolated-home"
    isolated.mkdir()
    monkeypatch.setenv("HOME", str(isolated))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def home_bin(tmp_path):
    """A per-test bin dir on PATH (after tests/fakebin) for stand-ins such as a fake `claude`."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def home(tmp_path, monkeypatch, home_bin):
    """A private HOME with a scrubbed environment; cwd is tmp_path/"work". Returns HOME."""
    h = tmp_path / "home"
    h.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) or name in _SCRUB_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(h / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(h / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(h / ".cache"))
    monkeypatch.setenv("FAKE_DATABRICKS_LOG", str(tmp_path / CALL_LOG_NAME))
    monkeypatch.setenv("PATH", os.pathsep.join([str(FAKEBIN), str(home_bin),
                                                os.environ.get("PATH", "")]))
    monkeypatch.setenv("BROWSER", "none")  # nothing may ever open a real browser
    # `fmapi` is on PATH, as after brew install or setup's launcher: messages say "fmapi ...".
    # Tests of the other install routes delete it (tests/test_launcher.py).
    make_stub(home_bin, "fmapi", '#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FMAPI))
    no_proxy = "127.0.0.1,localhost"
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)
    monkeypatch.chdir(work)
    return h


@pytest.fixture
def workspace():
    """A started FakeWorkspace (stopped afterwards)."""
    ws = FakeWorkspace()
    ws.start()
    try:
        yield ws
    finally:
        ws.stop()


@pytest.fixture
def logged_in(workspace, home):
    """Run the fake CLI's `databricks auth login` so ~/.databrickscfg and its OAuth cache exist.

    Returns the profile name ("fake-profile").
    """
    r = run_databricks("auth", "login", "--host", workspace.url, "--profile", PROFILE)
    assert r.returncode == 0, r.stderr
    return PROFILE


# ------------------------------------------------------------------ helpers
def _env(env):
    merged = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = str(v)
    return merged


def run_fmapi(*args, input=None, env=None, timeout=60):
    """Run ``python fmapi.py *args`` with the current (monkeypatched) environment.

    env: extra variables layered over os.environ (a value of None removes the variable).
    stdin is /dev/null unless ``input`` is given. Returns a text CompletedProcess.
    """
    return subprocess.run(
        [sys.executable, str(FMAPI), *[str(a) for a in args]],
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        env=_env(env), capture_output=True, text=True, timeout=timeout)


def run_databricks(*args, env=None, timeout=30):
    """Run the fake `databricks` CLI (via PATH) like fmapi would."""
    return subprocess.run(
        [str(FAKE_DATABRICKS), *[str(a) for a in args]],
        stdin=subprocess.DEVNULL, env=_env(env), capture_output=True, text=True,
        timeout=timeout)


def cli_token_cache(home) -> Path:
    """Path of the fake CLI's OAuth cache for this HOME."""
    return Path(home) / ".databricks" / "token-cache.json"


def expire_cli_session(home, workspace=None):
    """Simulate a dead login: the server forgets every OAuth token (when ``workspace`` is given)
    and the fake CLI's cached access tokens are marked expired, so the next `databricks auth
    token` must refresh, which then fails with the "refresh token is invalid … databricks auth
    login --profile P" error."""
    if workspace is not None:
        workspace.expire_session()
    path = cli_token_cache(home)
    data = json.loads(path.read_text())
    for entry in data.get("tokens", {}).values():
        entry["expiry"] = "2000-01-01T00:00:00.000000001+00:00"
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(0o600)


def databricks_calls(tmp_path):
    """argv lists (arguments after the program name) of every fake `databricks` invocation.

    Accepts the test's tmp_path or the log file itself."""
    p = Path(tmp_path)
    if p.is_dir():
        p = p / CALL_LOG_NAME
    if not p.exists():
        return []
    return [json.loads(line)["argv"] for line in p.read_text().splitlines() if line.strip()]


def make_stub(bin_dir, name, script_text):
    """Write an executable stand-in ``bin_dir/name``; ``#!/bin/sh`` is prepended when the text
    has no shebang. Returns its Path."""
    path = Path(bin_dir) / name
    if not script_text.startswith("#!"):
        script_text = "#!/bin/sh\n" + script_text
    path.write_text(script_text)
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------ an install's files
def read_json(path):
    return json.loads(Path(path).read_text())


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def cache_of(directory):
    """The install's token cache (directory holds .fmapi-pat-cache)."""
    return read_json(Path(directory) / ".fmapi-pat-cache")


def age_cache(directory, seconds_left):
    """Move the cached PAT's expiry (never the system clock): it now expires in ``seconds_left``."""
    path = Path(directory) / ".fmapi-pat-cache"
    data = read_json(path)
    data["expiry"] = int(time.time()) + seconds_left
    path.write_text(json.dumps(data))
    return data


def expire_cached_pat(workspace, directory):
    """The cached PAT has run out: the workspace no longer takes it, and the cache's clock says so."""
    data = age_cache(directory, -60)
    assert workspace.expire_pat(data["token"])
    return data
