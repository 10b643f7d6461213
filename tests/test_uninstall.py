"""`fmapi --uninstall`: every artifact goes, everything else stays."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import expire_cli_session, make_stub, run_fmapi
from test_claude import CLAUDE_STUB, DOWN, ENTER, Terminal, cache_of, read_json

USER_SETTINGS = {
    "permissions": {"allow": ["Bash(npm test)"], "deny": ["Read(./.env)"]},
    "theme": "light",
    "env": {"MY_VAR": "1", "HTTPS_PROXY": "http://proxy:3128"},
    "statusLine": {"type": "command", "command": "~/bin/status"},
    "includeCoAuthoredBy": False,
}


@pytest.fixture
def install(home, workspace, logged_in, home_bin):
    make_stub(home_bin, "claude", CLAUDE_STUB)

    def run(*extra):
        proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, *extra)
        assert proc.returncode == 0, proc.stderr
        return proc

    return run


def fmapi_files(base):
    d = Path(base) / ".claude"
    return [p for p in (d / "fmapi-key-helper.sh", d / ".fmapi-pat-cache", d / ".fmapi-pat-cache.lock") if p.exists()]


def test_uninstall_removes_home_cwd_and_custom_installs(home, install, tmp_path):
    custom = tmp_path / "elsewhere"
    install()
    install("--settings-location", "cwd")
    install("--settings-location", str(custom))
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    for base in (home, Path.cwd(), custom):
        assert not (base / ".claude" / "settings.json").exists()
        assert fmapi_files(base) == []
    assert not (home / ".local" / "share" / "fmapi").exists()  # the registry and runtime copy too
    again = run_fmapi("--uninstall", "--yes")
    assert again.returncode == 0
    assert again.stdout == "Nothing to uninstall.\n"
    assert run_fmapi("uninstall").stdout == "Nothing to uninstall.\n"


def test_user_settings_come_back_with_exactly_their_keys(home, install):
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_text(json.dumps(USER_SETTINGS, indent=4))
    install()
    assert read_json(d / "settings.json")["apiKeyHelper"]
    assert run_fmapi("uninstall", "--yes").returncode == 0
    assert read_json(d / "settings.json") == USER_SETTINGS
    assert fmapi_files(home) == []


def test_a_value_the_user_changed_is_kept_and_said(home, install):
    install()
    d = home / ".claude"
    settings = read_json(d / "settings.json")
    settings["env"]["ANTHROPIC_MODEL"] = "my-own-endpoint"
    (d / "settings.json").write_text(json.dumps(settings))
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0
    assert read_json(d / "settings.json") == {"env": {"ANTHROPIC_MODEL": "my-own-endpoint"}}
    assert "ANTHROPIC_MODEL" in proc.stdout and "Kept" in proc.stdout


def test_rc_files_lose_only_the_wrapper_blocks(home, install):
    zshrc = b"# zsh\nexport EDITOR=vim\n# >>> claude-fmapi wrapper >>>\nclaude() { databricks auth token; }\n# <<< claude-fmapi wrapper <<<\nbindkey -e"
    bashrc = b"# >>> fmapi wrapper >>>\nexport ANTHROPIC_AUTH_TOKEN=x\n# <<< fmapi wrapper <<<\n\n\nalias g=git\n"
    (home / ".zshrc").write_bytes(zshrc)
    (home / ".bashrc").write_bytes(bashrc)
    os.chmod(home / ".bashrc", 0o640)
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (home / ".zshrc").read_bytes() == b"# zsh\nexport EDITOR=vim\nbindkey -e"
    assert (home / ".bashrc").read_bytes() == b"\n\nalias g=git\n"
    assert oct((home / ".bashrc").stat().st_mode & 0o777) == oct(0o640)
    assert len(list(home.glob(".zshrc.fmapi-backup-*"))) == 1
    assert run_fmapi("--uninstall", "--yes").stdout == "Nothing to uninstall.\n"


def test_without_revoke_the_pats_stay(home, workspace, install):
    install()
    token = cache_of(home / ".claude")["token"]
    assert run_fmapi("uninstall", "--yes", "--no-revoke").returncode == 0
    assert token in workspace.pat_values()
    assert run_fmapi("uninstall", "--yes").stdout == "Nothing to uninstall.\n"


def test_revoke_removes_every_claude_code_fmapi_pat_and_nothing_else(home, workspace, install):
    install()
    mine = cache_of(home / ".claude")["token"]
    other_machine = workspace.add_pat("Claude Code FMAPI (created 2026-10-01)")["token_value"]
    unrelated = workspace.add_pat("my CI token")["token_value"]
    proc = run_fmapi("uninstall", "--yes", "--revoke")
    assert proc.returncode == 0, proc.stderr
    live = workspace.pat_values()
    assert mine not in live and other_machine not in live
    assert unrelated in live


def test_revoke_with_a_dead_session_still_cleans_up_locally(home, workspace, install, logged_in):
    install()
    expire_cli_session(home, workspace)
    proc = run_fmapi("uninstall", "--yes", "--revoke")
    assert proc.returncode == 1
    assert "databricks auth login --host %s --profile %s" % (workspace.url, logged_in) in proc.stdout
    assert fmapi_files(home) == []
    assert not (home / ".claude" / "settings.json").exists()


def test_corrupt_settings_are_left_untouched_and_reported(home, install):
    install()
    d = home / ".claude"
    broken = b'{"apiKeyHelper": "x", oops'
    (d / "settings.json").write_bytes(broken)
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 1
    assert (d / "settings.json").read_bytes() == broken
    assert "not valid JSON" in proc.stdout and "Failed" in proc.stdout
    # The file may still name the helper: the helper (and what it needs) stays until the file is fixed.
    assert (d / "fmapi-key-helper.sh").exists() and "kept" in proc.stdout and "fmapi-key-helper.sh" in proc.stdout
    assert run_fmapi("token").returncode == 0
    (d / "settings.json").write_text('{"apiKeyHelper": "x"}\n')
    again = run_fmapi("uninstall", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert fmapi_files(home) == [] and json.loads((d / "settings.json").read_text()) == {"apiKeyHelper": "x"}


def test_finds_an_install_the_registry_forgot(home, install):
    install()
    shutil.rmtree(home / ".local" / "share" / "fmapi")
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert fmapi_files(home) == [] and not (home / ".claude" / "settings.json").exists()


def test_seed_style_install_without_fmapi_records(home, workspace):
    """What the bash original left: settings keys, a helper, a cache; no registry."""
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_text(json.dumps({
        "apiKeyHelper": str(d / "fmapi-key-helper.sh"), "theme": "dark",
        "env": {"ANTHROPIC_BASE_URL": "https://x.cloud.databricks.com/serving-endpoints/anthropic",
                "ANTHROPIC_MODEL": "databricks-claude-opus-4-6", "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": "3600000"}}))
    (d / "fmapi-key-helper.sh").write_text("#!/bin/sh\njq -r .token ~/.claude/.fmapi-pat-cache\n")
    (d / ".fmapi-pat-cache").write_text('{"token": "dapi0", "expiry": 1}')
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert read_json(d / "settings.json") == {"theme": "dark"}
    assert sorted(p.name for p in d.iterdir()) == ["settings.json"]


def test_without_a_terminal_it_asks_for_yes(home, install):
    install()
    proc = run_fmapi("uninstall")
    assert proc.returncode == 2
    assert "--yes" in proc.stderr
    assert fmapi_files(home) != []


def test_interactive_uninstall_lists_asks_and_defaults_to_not_revoking(home, workspace, install):
    install()
    token = cache_of(home / ".claude")["token"]
    term = Terminal(["--uninstall"], cwd=os.getcwd())
    listing = term.expect("Remove all of this?")
    assert "settings.json" in listing
    term.send("y\r")
    question = term.expect("Esc or q cancels)")
    assert "other machines" in question
    term.send(ENTER)
    assert term.finish() == 0, term.buffer
    assert fmapi_files(home) == []
    assert token in workspace.pat_values()


def test_interactive_uninstall_can_revoke(home, workspace, install):
    install()
    token = cache_of(home / ".claude")["token"]
    term = Terminal(["uninstall"], cwd=os.getcwd())
    term.expect("Remove all of this?")
    term.send("y\r")
    term.expect("Esc or q cancels)")
    term.send(DOWN + ENTER)
    assert term.finish() == 0, term.buffer
    assert token not in workspace.pat_values()


def test_ctrl_c_at_the_question_changes_nothing(home, install):
    install()
    before = {p: p.read_bytes() for p in (home / ".claude").iterdir()}
    term = Terminal(["--uninstall"], cwd=os.getcwd())
    term.expect("Remove all of this?")
    time.sleep(0.1)
    term.send("\x03")
    assert term.finish() == 130
    assert {p: p.read_bytes() for p in (home / ".claude").iterdir()} == before


def test_claude_json_that_fmapi_created_goes_and_one_of_yours_stays(home, install):
    install()
    assert read_json(home / ".claude.json") == {"hasCompletedOnboarding": True}
    assert run_fmapi("uninstall", "--yes").returncode == 0
    assert not (home / ".claude.json").exists()

    (home / ".claude.json").write_text(json.dumps({"numStartups": 3}))
    install()
    assert run_fmapi("uninstall", "--yes").returncode == 0
    assert read_json(home / ".claude.json") == {"numStartups": 3, "hasCompletedOnboarding": True}


def test_credentials_the_user_added_after_setup_are_theirs(home, install):
    install()
    d = home / ".claude"
    settings = read_json(d / "settings.json")
    settings["env"]["ANTHROPIC_API_KEY"] = "sk-my-own"
    (d / "settings.json").write_text(json.dumps(settings))
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert read_json(d / "settings.json") == {"env": {"ANTHROPIC_API_KEY": "sk-my-own"}}
    assert "env.ANTHROPIC_API_KEY (not fmapi's)" in proc.stdout
    assert "sk-my-own" not in proc.stdout + proc.stderr


def test_the_bash_originals_token_and_meta_go(home):
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_text(json.dumps({
        "_fmapi_meta": {"host": "https://x.cloud.databricks.com"}, "model": "opus",
        "env": {"ANTHROPIC_AUTH_TOKEN": "dapi-old", "ANTHROPIC_BASE_URL": "https://x.cloud.databricks.com/serving-endpoints/anthropic"}}))
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert read_json(d / "settings.json") == {"model": "opus"}


def test_a_hand_written_databricks_settings_file_is_not_an_install(home, tmp_path, monkeypatch):
    project = tmp_path / "team-repo"
    (project / ".claude").mkdir(parents=True)
    team = {"env": {"ANTHROPIC_BASE_URL": "https://x.cloud.databricks.com/serving-endpoints/anthropic",
                    "ANTHROPIC_MODEL": "databricks-claude-sonnet-4-6", "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1"}}
    (project / ".claude" / "settings.json").write_text(json.dumps(team))
    monkeypatch.chdir(project)
    proc = run_fmapi("uninstall", "--yes")
    assert proc.stdout == "Nothing to uninstall.\n"
    assert read_json(project / ".claude" / "settings.json") == team


def test_a_symlinked_settings_file_stays_a_symlink(home, install, tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "claude-settings.json"
    target.write_text(json.dumps(USER_SETTINGS))
    (home / ".claude").mkdir()
    link = home / ".claude" / "settings.json"
    link.symlink_to(target)
    install()
    assert link.is_symlink() and read_json(target)["apiKeyHelper"]
    assert run_fmapi("uninstall", "--yes").returncode == 0
    assert link.is_symlink() and read_json(target) == USER_SETTINGS


def test_a_rerun_elsewhere_refreshes_the_cwd_install_instead_of_making_a_new_one(home, install, tmp_path,
                                                                                  monkeypatch, workspace):
    project, other = tmp_path / "project", tmp_path / "other"
    project.mkdir()
    other.mkdir()
    monkeypatch.chdir(project)
    install("--settings-location", "cwd")
    monkeypatch.chdir(other)
    proc = run_fmapi("setup", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (project / ".claude" / "settings.json").exists() and not (other / ".claude").exists()
    assert len(workspace.pats_with_comment_prefix("Claude Code FMAPI")) == 1


@pytest.mark.parametrize("installs", [
    {"/x": 5},
    {"/tmp": {"agent": "claude", "dir": 5}},
    {"/y": {"agent": "claude"}},
    {"/z": {"agent": "nosuchagent", "dir": "/z"}},
    ["not", "a", "table"],
])
def test_wrong_typed_registry_entries_are_dropped_not_a_traceback(home, install, installs):
    install()
    registry = home / ".local" / "share" / "fmapi" / "installs.json"
    good = json.loads(registry.read_text())["installs"]
    if isinstance(installs, dict):
        installs = dict(good, **installs)
    damaged = json.dumps({"version": 1, "installs": installs})
    registry.write_text(damaged)
    status = run_fmapi("status")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert "installs.json" in status.stderr and "dropped" in status.stderr
    backups = list(registry.parent.glob("installs.json.fmapi-backup-*"))
    assert [b.read_text() for b in backups] == [damaged]  # the file's bytes are kept aside
    for command in (("doctor",), ("status",)):
        proc = run_fmapi(*command)
        assert "Traceback" not in proc.stderr and "dropped" not in proc.stderr, proc.stderr  # said once
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert not (home / ".claude" / "settings.json").exists()


UNREADABLE = b'{\n  // my comment\n  "theme": "dark",\n  "env": {"FOO": "bar"}\n}\n'


def test_an_unreadable_settings_file_comes_back_byte_for_byte_at_uninstall(home, install):
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_bytes(UNREADABLE)
    setup = install()
    assert "stop applying" in setup.stderr and "fmapi --uninstall" in setup.stderr
    install()  # a re-run backs up nothing more: fmapi's own file is readable
    assert len(list(d.glob("settings.json.fmapi-backup-*"))) == 1
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (d / "settings.json").read_bytes() == UNREADABLE
    assert list(d.glob("settings.json.fmapi-backup-*")) == []
    assert "put back your original" in proc.stdout


def test_an_unreadable_settings_files_backup_stays_when_the_user_added_settings(home, install):
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_bytes(UNREADABLE)
    install()
    settings = read_json(d / "settings.json")
    settings["model"] = "mine"
    (d / "settings.json").write_text(json.dumps(settings))
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert read_json(d / "settings.json") == {"model": "mine"}
    [backup] = d.glob("settings.json.fmapi-backup-*")
    assert backup.read_bytes() == UNREADABLE and backup.name in proc.stdout
