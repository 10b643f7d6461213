"""Every reader of a user's config file (breaker F3, F4, F5): a file nested too deeply to parse,
a path that is a device or FIFO, a file too big to be a config, and valid JSON of the wrong
top-level type each get one clear line naming the file, never a traceback or an endless read."""

import os

import pytest

from conftest import make_stub, run_fmapi
from test_claude import CLAUDE_STUB
from test_codex import CODEX_STUB
from test_gemini import gemini_stub
from test_pi import PI_STUB

DEEP_JSON = b"[" * 100000 + b"\n"

# agent -> (its user file under HOME, bytes nested too deeply to parse)
FILES = {
    "claude": (".claude/settings.json", DEEP_JSON),
    "codex": (".codex/config.toml", b"a = " + b"[" * 100000 + b"\n"),
    "gemini": (".gemini/settings.json", DEEP_JSON),
    "pi": (".pi/agent/models.json", b'{"providers": ' + b"[" * 100000 + b"\n"),
}


@pytest.fixture
def stubs(home_bin, tmp_path):
    make_stub(home_bin, "claude", CLAUDE_STUB)
    make_stub(home_bin, "codex", CODEX_STUB % "0.169.0")
    make_stub(home_bin, "pi", PI_STUB % "1.6.0")
    gemini_stub(home_bin, tmp_path / "gemini-run.json")


@pytest.fixture
def setup(workspace, logged_in, stubs):
    def run(agent):
        return run_fmapi("setup", "--yes", "--agent", agent, "--host", workspace.url, "--profile", logged_in, timeout=60)

    return run


def one_clear_line(proc, name):
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "RecursionError" not in out, out
    assert name in out, out
    return out


def nothing_minted(workspace):
    return not workspace.requests_to("/api/2.0/token/create")


@pytest.mark.parametrize("agent", sorted(FILES))
def test_a_file_nested_too_deeply_is_reported_not_a_traceback(home, workspace, setup, agent):
    relative, deep = FILES[agent]
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(deep)
    proc = setup(agent)
    out = one_clear_line(proc, os.path.basename(relative))
    if agent == "claude":  # Claude's way with an unparsable settings.json: kept aside, rebuilt
        assert proc.returncode == 0 and "nested too deeply" in out
        backups = [p for p in os.listdir(path.parent) if "fmapi-backup" in p]
        assert len(backups) == 1 and (path.parent / backups[0]).read_bytes() == deep
    else:  # the others' way: refused, the file untouched, nothing minted
        assert proc.returncode == 1 and path.read_bytes() == deep and nothing_minted(workspace)
    for command in (("status",), ("doctor",), ("--uninstall", "--yes")):
        one_clear_line(run_fmapi(*command, timeout=60), "")


@pytest.mark.parametrize("agent", sorted(FILES))
@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_a_config_path_that_is_no_regular_file_is_refused_at_once(home, workspace, setup, agent, kind, tmp_path):
    relative, _ = FILES[agent]
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(str(path))
    else:
        with open(path, "wb") as handle:  # sparse: 17 MiB of nothing
            handle.truncate(17 * 1024 * 1024)
    proc = setup(agent)  # before the fix: read forever (killed) or blocked on the FIFO (timeout)
    out = one_clear_line(proc, os.path.basename(relative))
    assert proc.returncode == 1 and "cannot be read as a config file" in out
    assert len([line for line in proc.stderr.splitlines() if "cannot be read" in line]) == 1
    assert nothing_minted(workspace)
    assert not [p for p in os.listdir(path.parent) if "fmapi-backup" in p]
    if kind == "dev-zero":
        assert os.readlink(str(path)) == "/dev/zero"
    elif kind == "huge":
        assert path.stat().st_size == 17 * 1024 * 1024


def test_a_json_array_is_called_an_array_not_invalid_json(home, workspace, setup):
    claude = home / ".claude" / "settings.json"
    claude.parent.mkdir()
    claude.write_bytes(b"[]\n")
    proc = setup("claude")
    assert proc.returncode == 0
    assert "the top level is a JSON array, not an object" in proc.stderr and "not valid JSON" not in proc.stderr
    models = home / ".pi" / "agent" / "models.json"
    models.parent.mkdir(parents=True)
    models.write_bytes(b"[1, 2]\n")
    proc = setup("pi")
    assert proc.returncode == 1 and "the top level is a JSON array, not an object" in proc.stderr
    assert models.read_bytes() == b"[1, 2]\n"


@pytest.mark.parametrize("agent", sorted(FILES))
@pytest.mark.parametrize("kind", ["deep", "dev-zero"])
def test_status_doctor_and_uninstall_report_a_damaged_file_in_one_line(home, workspace, setup, agent, kind):
    assert setup(agent).returncode == 0
    relative, deep = FILES[agent]
    path = home / relative
    path.unlink()
    if kind == "deep":
        path.write_bytes(deep)
    else:
        path.symlink_to("/dev/zero")
    for command in (("status",), ("doctor",), ("--uninstall", "--yes")):
        proc = run_fmapi(*command, timeout=60)  # before the fix: a traceback, or read until killed
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out and proc.returncode != -9, (command, out)
    if kind == "dev-zero":
        assert os.readlink(str(path)) == "/dev/zero"
    else:
        assert path.read_bytes() == deep or any("fmapi-backup" in p for p in os.listdir(path.parent))
