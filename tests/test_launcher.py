"""`fmapi` on PATH for every install route (issue 15): the launcher setup offers, and messages
that say how to run fmapi the way that works for this user."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess

import pytest

from conftest import FMAPI, make_stub, run_fmapi
from test_claude import CLAUDE_STUB, ENTER, Terminal


@pytest.fixture
def no_fmapi_on_path(home, home_bin, monkeypatch):
    """The clone or curl-and-run user: no `fmapi` command anywhere on PATH."""
    (home_bin / "fmapi").unlink()
    local_bin = home / ".local" / "bin"
    monkeypatch.setenv("PATH", os.pathsep.join([str(local_bin), os.environ["PATH"]]))
    make_stub(home_bin, "claude", CLAUDE_STUB)
    return local_bin


def as_run_here():
    """How this test's fmapi.py is started, as fmapi itself should print it."""
    import shutil
    import sys

    same = os.path.realpath(shutil.which("python3") or "") == os.path.realpath(sys.executable)
    return "%s %s" % ("python3" if same else shlex.quote(sys.executable), shlex.quote(str(FMAPI)))


def test_messages_say_the_exact_command_without_a_launcher(home, no_fmapi_on_path):
    r = run_fmapi("token", "--agent", "codex")
    assert r.returncode == 1
    assert "Set one up first: %s setup --agent codex" % as_run_here() in r.stderr, r.stderr
    r = run_fmapi("status")
    assert "Set one up with: %s setup" % as_run_here() in r.stdout, r.stdout


def test_launcher_round_trip(home, workspace, logged_in, no_fmapi_on_path):
    launcher = no_fmapi_on_path / "fmapi"
    r = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, "--link")
    assert r.returncode == 0, r.stderr
    assert "wrote the launcher ~/.local/bin/fmapi" in r.stdout
    mode = stat.S_IMODE(launcher.stat().st_mode)
    assert mode == 0o700
    text = launcher.read_text()
    assert text.startswith("#!/bin/sh\n# fmapi launcher, written by fmapi ")
    runtime = home / ".local" / "share" / "fmapi" / "runtime" / "fmapi.py"
    assert shlex.quote(str(runtime)) in text and str(FMAPI) not in text
    # It runs fmapi from anywhere, from the private copy (the clone may go away).
    elsewhere = home / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(["fmapi", "--version"], cwd=str(elsewhere), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("fmapi "), out.stderr
    status = subprocess.run(["fmapi", "status"], cwd=str(elsewhere), capture_output=True, text=True)
    assert status.returncode == 0 and "Claude Code" in status.stdout, status.stderr
    # Messages now say plain `fmapi`.
    r = run_fmapi("token", "--agent", "codex")
    assert "Set one up first: fmapi setup --agent codex" in r.stderr, r.stderr
    # A re-run renews it quietly; uninstall removes it with everything else.
    r = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert r.returncode == 0 and "wrote the launcher" not in r.stdout and launcher.exists()
    r = subprocess.run(["fmapi", "--uninstall", "--yes"], cwd=str(elsewhere), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the fmapi launcher ~/.local/bin/fmapi" in r.stdout
    assert not launcher.exists() and not runtime.exists()
    assert run_fmapi("--uninstall", "--yes").stdout.strip() == "Nothing to uninstall."


def test_no_launcher_unless_asked(home, workspace, logged_in, no_fmapi_on_path):
    r = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert r.returncode == 0, r.stderr
    assert not (no_fmapi_on_path / "fmapi").exists()
    r = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, "--no-link")
    assert not (no_fmapi_on_path / "fmapi").exists()


def test_launcher_outside_path_is_named_in_full(home, workspace, logged_in, no_fmapi_on_path, monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != str(no_fmapi_on_path)))
    r = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, "--link")
    assert r.returncode == 0, r.stderr
    assert "~/.local/bin is not on your PATH" in r.stderr
    r = run_fmapi("token", "--agent", "codex")
    assert "Set one up first: %s setup --agent codex" % (no_fmapi_on_path / "fmapi") in r.stderr, r.stderr


def test_a_file_of_the_user_is_never_replaced(home, workspace, logged_in, no_fmapi_on_path):
    no_fmapi_on_path.mkdir(parents=True)
    mine = make_stub(no_fmapi_on_path, "fmapi", "echo my own fmapi\n")
    before = mine.read_bytes()
    r = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, "--link")
    assert r.returncode == 0, r.stderr
    assert mine.read_bytes() == before
    r = run_fmapi("--uninstall", "--yes")
    assert mine.read_bytes() == before and "launcher" not in r.stdout


def test_setup_offers_the_launcher_at_the_terminal(home, workspace, logged_in, no_fmapi_on_path):
    term = Terminal(["--host", workspace.url, "--profile", logged_in, "--model", "m", "--opus", "o", "--sonnet", "s",
                     "--haiku", "h", "--settings-location", "home", "--pat-lifetime", "1", "--auth", "pat",
                     "--skip-model-check"],
                    cwd=os.getcwd(), env={"PATH": os.environ["PATH"]})
    term.expect("Put an `fmapi` command in ~/.local/bin, so you can type fmapi from anywhere? (y/n) [y]: ")
    term.send(ENTER)  # Enter = yes
    term.expect("wrote the launcher ~/.local/bin/fmapi")
    assert term.finish() == 0
    assert (no_fmapi_on_path / "fmapi").exists()
