"""Setup's flow (issue 15): flags that do not apply, answers shared between agents' installs,
a paste-ready command when a step fails, one closing message."""

from __future__ import annotations

import pytest

from conftest import run_fmapi


@pytest.mark.parametrize("args, flag, owner", [
    (["--agent", "codex", "--opus", "x"], "--opus", "Claude Code"),
    (["--agent", "gemini", "--haiku", "x"], "--haiku", "Claude Code"),
    (["--agent", "codex", "--settings-location", "cwd"], "--settings-location", "Claude Code"),
    (["--agent", "claude", "--write-env"], "--write-env", "Gemini CLI"),
    (["--agent", "codex", "--no-write-env"], "--no-write-env", "Gemini CLI"),
])
def test_a_flag_for_another_agent_is_an_error(home, args, flag, owner):
    r = run_fmapi("setup", "--yes", "--host", "https://my-workspace.cloud.databricks.com", *args)
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith("fmapi: %s does not apply to " % flag) and first.endswith("it is for %s." % owner), r.stderr
    assert r.stdout == ""  # refused before anything ran
    assert not any(home.iterdir())


def test_a_second_agent_takes_the_workspace_and_profile_of_the_first(home, workspace, logged_in, home_bin):
    from conftest import make_stub
    from test_claude import CLAUDE_STUB

    make_stub(home_bin, "claude", CLAUDE_STUB)
    make_stub(home_bin, "codex", "echo 'codex-cli 0.169.0'\n")
    r = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert r.returncode == 0, r.stderr
    # Without --host: the Claude install's workspace and profile (it used to stop here).
    r = run_fmapi("setup", "--yes", "--agent", "codex")
    assert r.returncode == 0, r.stderr
    assert "Databricks sign-in (profile %s on %s)" % (logged_in, workspace.url) in r.stdout


@pytest.fixture
def claude(home_bin):
    from conftest import make_stub
    from test_claude import CLAUDE_STUB

    return make_stub(home_bin, "claude", CLAUDE_STUB)


def test_closing_message_has_one_shape_and_repeats_warnings(home, workspace, logged_in, claude):
    r = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in,
                  env={"ANTHROPIC_API_KEY": "sk-env"})
    assert r.returncode == 0, r.stderr
    closing = r.stdout.split("[5/5]", 1)[1]
    assert "Run `claude`" in closing
    assert "  Workspace: %s (profile %s); model: databricks-claude-opus-4-6; files: ~/.claude/settings.json" % (
        workspace.url, logged_in) in closing
    assert '  Without a terminal (scripts, CI): claude -p "your task"' in closing
    assert "  Check it: fmapi status; undo all of it: fmapi --uninstall" in closing
    warning = [line for line in r.stderr.splitlines() if "ANTHROPIC_API_KEY" in line][0].split("warning: ", 1)[1]
    assert "Warnings during this setup (see above):\n  - " + warning in closing
    assert "Nothing changed" not in closing


def test_a_rerun_that_changes_nothing_says_so(home, workspace, logged_in, claude):
    args = ("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert run_fmapi(*args).returncode == 0
    r = run_fmapi(*args)
    assert r.returncode == 0, r.stderr
    assert "Nothing changed: Claude Code was already set up this way." in r.stdout
    r = run_fmapi(*args, "--model", "databricks-claude-sonnet-4-6")
    assert r.returncode == 0 and "Nothing changed" not in r.stdout


def test_a_rerun_that_replaces_the_pat_says_it_revoked_the_old_one(home, workspace, logged_in, claude):
    args = ("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert run_fmapi(*args).returncode == 0
    first = set(workspace.pat_values())
    r = run_fmapi(*args, "--pat-lifetime", "3")  # another lifetime: a new PAT, the old one revoked
    assert r.returncode == 0, r.stderr
    assert "revoked the PAT it replaced (token id " in r.stdout
    assert not first & set(workspace.pat_values())


def test_a_failing_step_after_the_questions_prints_one_paste_ready_command(home, workspace, logged_in, home_bin):
    import os
    import shlex

    from conftest import make_stub
    from test_claude import ENTER, Terminal

    make_stub(home_bin, "codex", "echo 'codex-cli 0.0.1'\n")  # too old: step 1 fails after the questions
    term = Terminal(["--agent", "codex", "--host", workspace.url, "--profile", logged_in], cwd=os.getcwd())
    term.expect("renewed through the Databricks CLI)")  # the Credential selector: PAT
    term.send(ENTER)
    term.expect("Model:")
    term.expect("Other\u2026")
    term.send("2" + ENTER)  # databricks-gpt-5-2-codex
    term.expect("7 days")
    term.send("2" + ENTER)  # 3 days
    term.expect("Your answers, to run this setup again without questions:")
    assert term.finish() == 1
    line = [row.strip() for row in term.buffer.splitlines() if row.strip().startswith("fmapi setup")][0]
    assert line == ("fmapi setup --agent codex --host %s --profile %s --auth pat --model databricks-gpt-5-2-codex "
                    "--pat-lifetime 3 --yes" % (workspace.url, logged_in)), line
    # Pasted after fixing the cause, it asks nothing and sets up exactly that.
    make_stub(home_bin, "codex", "echo 'codex-cli 0.169.0'\n")
    r = run_fmapi(*shlex.split(line)[1:])
    assert r.returncode == 0, r.stderr
    assert 'model = "databricks-gpt-5-2-codex"' in (home / ".codex" / "config.toml").read_text()


def test_a_missing_agent_is_named_before_any_question(home, home_bin, monkeypatch):
    import os

    from conftest import FAKEBIN

    monkeypatch.setenv("PATH", os.pathsep.join([str(FAKEBIN), str(home_bin), "/usr/bin", "/bin"]))
    r = run_fmapi("setup", "--no-install", "--host", "https://my-workspace.cloud.databricks.com")  # no claude anywhere
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == "fmapi needs Claude Code, which is not installed."
    assert "not installing Claude Code (--no-install); nothing was changed." in r.stderr
    assert "curl -fsSL https://claude.ai/install.sh | bash" in r.stderr
    assert "Workspace URL" not in r.stdout + r.stderr and not (home / ".claude").exists()


def test_installing_asks_first_at_the_terminal(home, home_bin):
    import os

    from conftest import FAKEBIN
    from test_claude import Terminal

    path = os.pathsep.join([str(FAKEBIN), str(home_bin), "/usr/bin", "/bin"])
    term = Terminal([], cwd=os.getcwd(), env={"PATH": path})
    seen = term.expect("Install Claude Code now? (y/n) [y]: ")
    assert "fmapi needs Claude Code, which is not installed." in seen and "Workspace URL" not in seen
    term.send("n\r")
    assert term.finish() == 1
    assert "setup needs Claude Code; nothing was changed." in term.buffer
    assert not (home / ".claude").exists()
