"""The terminal (issue 15): colour only where a person sees it, prompts on /dev/tty, the selector.

fmapi runs in a real pseudo-terminal; what it draws is fed to pyte (a VT100 emulator) so the
tests read the screen a person would see, not just the bytes.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time

import pyte
import pytest

from conftest import FMAPI, make_stub, run_fmapi
from test_claude import CLAUDE_STUB, ENTER, Terminal

ESC = "\x1b"
MODELS = ["--auth", "pat", "--model", "m", "--opus", "o", "--sonnet", "s", "--haiku", "h", "--skip-model-check"]


@pytest.fixture
def claude_stub(home_bin):
    return make_stub(home_bin, "claude", CLAUDE_STUB)


def screen_of(raw, columns=80, lines=24):
    """The lines a VT100 of that size shows after ``raw`` (trailing blanks cut)."""
    screen = pyte.Screen(columns, lines)
    pyte.Stream(screen).feed(raw)
    return [line.rstrip() for line in screen.display]


def settle(term, seconds=0.5):
    """Read whatever fmapi draws within ``seconds`` (into term.buffer and term.history)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if select.select([term.fd], [], [], 0.05)[0]:
            try:
                chunk = os.read(term.fd, 4096).decode("utf-8", "replace")
            except OSError:
                return
            if not chunk:
                return
            term.buffer += chunk
            term.history += chunk


# ----------------------------------------------------------------------------- colour


def run_in_pty(args, env, cwd):
    """fmapi with stdout and stderr on a pseudo-terminal; (exit code, raw bytes it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.execv(sys.executable, [sys.executable, str(FMAPI)] + list(args))
    data = b""
    deadline = time.time() + 120
    while time.time() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            data += chunk
            if chunk:
                continue
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            try:
                while select.select([fd], [], [], 0.1)[0]:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            os.close(fd)
            return os.waitstatus_to_exitcode(status), data
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("fmapi did not finish:\n%r" % data)


def setup_args(workspace, logged_in):
    return ["setup", "--yes", "--host", workspace.url, "--profile", logged_in]


def test_headings_warnings_and_errors_are_coloured_on_a_terminal(home, workspace, logged_in, claude_stub):
    env = {"TERM": "xterm", "NO_COLOR": None, "ANTHROPIC_API_KEY": "sk-from-the-environment"}
    code, out = run_in_pty(setup_args(workspace, logged_in), env, os.getcwd())
    assert code == 0, out
    assert b"\x1b[1m[1/5] Dependencies\x1b[0m" in out
    assert b"\x1b[33mfmapi: warning:\x1b[0m ANTHROPIC_API_KEY" in out
    code, out = run_in_pty(["setup", "--yes", "--host", "http://example.com"], env, os.getcwd())
    assert code == 2
    assert out.startswith(b"\x1b[31mfmapi: Workspace URL must start with https://\x1b[0m\r\n"), out


@pytest.mark.parametrize("env", [{"TERM": "xterm", "NO_COLOR": "1"}, {"TERM": "dumb", "NO_COLOR": None},
                                 {"TERM": None, "NO_COLOR": None}], ids=["NO_COLOR", "TERM=dumb", "no TERM"])
def test_no_escape_sequences_with_no_color_or_a_dumb_terminal(home, workspace, logged_in, claude_stub, env):
    env = dict(env, ANTHROPIC_API_KEY="sk-from-the-environment")
    code, out = run_in_pty(setup_args(workspace, logged_in), env, os.getcwd())
    assert code == 0, out
    assert b"\x1b" not in out
    assert b"\r\n[1/5] Dependencies\r\n" in out and b"fmapi: warning: ANTHROPIC_API_KEY" in out
    code, out = run_in_pty(["setup", "--yes", "--host", "http://example.com"], env, os.getcwd())
    assert (code, out.split(b"\r\n")[0]) == (2, b"fmapi: Workspace URL must start with https://")


def test_no_colour_when_output_is_not_a_terminal(home, workspace, logged_in, claude_stub):
    r = run_fmapi(*setup_args(workspace, logged_in), env={"TERM": "xterm", "ANTHROPIC_API_KEY": "sk-env"})
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout + r.stderr
    assert "[1/5] Dependencies" in r.stdout and "fmapi: warning: ANTHROPIC_API_KEY" in r.stderr


# ----------------------------------------------------------------------------- the selector


def test_selector_at_40_columns_cuts_long_rows_and_leaves_one_line(home, workspace, logged_in, claude_stub):
    term = Terminal(["--host", workspace.url, "--profile", logged_in] + MODELS, cwd=os.getcwd(), columns=40)
    term.expect("Custom path")
    for key in ("j", "j", "k", "k"):  # down, down, up, up: redrawn in place each time
        term.send(key)
        settle(term, 0.3)
    screen = screen_of(term.history, columns=40)
    text = "\n".join(screen)
    # The hint names every key; each row is drawn once, cut with an ellipsis, never wrapped.
    top = screen.index("Settings location:")
    hint = " ".join(line.strip() for line in screen[top + 1:top + 3])
    for key in ("up/down", "j/k", "1-3", "Enter", "Esc", "q cancels"):
        assert key in hint, text
    assert text.count("Home directory") == 1 and text.count("Current directory") == 1, text
    home_row = [line for line in screen if "Home directory" in line][0]
    assert home_row.startswith("  > Home directory (~/") and home_row.endswith("\u2026") and len(home_row) == 39, text
    term.send("2")  # a digit jumps to that row
    settle(term, 0.3)
    term.send(ENTER)
    term.expect("7 days")
    settle(term)
    screen = screen_of(term.history, columns=40)
    text = "\n".join(screen)
    # Of the first selector, only the answer stays (cut to the width too).
    assert [line for line in screen if "Settings location" in line] == ["Settings location: Current directory (\u2026"], text
    assert "Home directory" not in text and "Custom path" not in text and text.count("Esc or q") == 1, text
    # Esc cancels like Ctrl-C: exit 130, the terminal restored, nothing written.
    term.send(ESC)
    assert term.finish() == 130
    restored = term.history.rindex("\x1b[?25h")  # the cursor is shown again, then the message
    assert "fmapi: interrupted; files are as they were" in term.history[restored:]
    assert not (home / ".claude").exists() and not (home.parent / "work" / ".claude").exists()


def test_q_cancels_and_selector_on_a_dumb_terminal_is_a_numbered_list(home, workspace, logged_in, claude_stub):
    term = Terminal(["--host", workspace.url, "--profile", logged_in] + MODELS, cwd=os.getcwd(), env={"TERM": "dumb"})
    term.expect("Settings location:")
    term.expect("Choose 1-3, q cancels [1]: ")
    term.send("2\r")
    seen = term.expect("Choose 1-4, q cancels [1]: ")
    assert "  1) 1 day" in seen and "  4) 7 days" in seen and "Settings location: Current directory" in seen
    term.send("q\r")
    assert term.finish() == 130
    assert "\x1b" not in term.buffer
    assert not (home.parent / "work" / ".claude").exists()


# ----------------------------------------------------------------------------- /dev/tty prompts


class PipedTerminal(Terminal):
    """fmapi on a terminal with its stdout into a pipe, as in `fmapi | tee setup.log`."""

    def __init__(self, args, cwd):
        read_end, write_end = os.pipe()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            os.environ["TERM"] = "xterm"
            os.dup2(write_end, 1)
            os.close(read_end)
            os.close(write_end)
            os.execv(sys.executable, [sys.executable, str(FMAPI)] + list(args))
        os.close(write_end)
        self.pipe = os.fdopen(read_end, "r")
        self.buffer = self.history = ""


def test_prompts_use_the_terminal_when_stdout_is_a_pipe(home, workspace, logged_in, claude_stub):
    term = PipedTerminal([], cwd=os.getcwd())
    term.expect("Workspace URL (e.g. https://my-workspace.cloud.databricks.com): ")
    term.send(workspace.url + "\r")
    term.expect("CLI profile name (the Databricks CLI profile to sign in with")
    term.send(logged_in + "\r")
    term.expect("renewed through the Databricks CLI)")  # the Credential selector (issue 11): PAT
    term.send(ENTER)
    for label in ("Model:", "Opus model:", "Sonnet model:", "Haiku model:"):  # selectors of the workspace's models
        term.expect(label)
        term.expect("Other\u2026")
        term.send(ENTER)
    term.expect("Custom path")
    term.send(ENTER)
    term.expect("7 days")
    term.send(ENTER)
    assert term.finish() == 0, term.history
    piped = term.pipe.read()
    # The log gets fmapi's report, plain; the questions and answers stayed on the terminal.
    assert "[1/5] Dependencies" in piped and "[5/5]" in piped
    assert "Workspace URL" not in piped and "\x1b" not in piped
    assert "[1/5]" not in term.history
    assert (home / ".claude" / "settings.json").exists()


def test_ctrl_d_at_a_text_prompt_ends_the_line_before_the_message(home, claude_stub):
    term = Terminal([], cwd=os.getcwd())
    term.expect("Workspace URL")
    settle(term, 0.3)
    term.send("\x04")
    assert term.finish() == 1
    screen = screen_of(term.history)
    assert screen[0] == "Workspace URL (e.g. https://my-workspace.cloud.databricks.com):", screen
    assert screen[1] == "fmapi: no answer for 'Workspace URL' (input ended).", screen
