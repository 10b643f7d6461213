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
