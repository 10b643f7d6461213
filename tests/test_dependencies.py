"""Setup installs a missing agent or Databricks CLI the seed's way. The installers themselves
(curl | bash, Homebrew) cannot run here, so `run_installer` is mocked; the rest is real."""

import os
import sys
from pathlib import Path

import pytest

from conftest import FAKE_DATABRICKS, make_stub
from test_claude import CLAUDE_STUB

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fmapi  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_process_state():
    """fmapi.main() sets the umask and a SIGTERM handler for its process: give them back."""
    import signal
    umask = os.umask(0o022)
    os.umask(umask)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    os.umask(umask)
    signal.signal(signal.SIGTERM, handler)


@pytest.fixture
def bare_path(home, monkeypatch):
    """PATH with system tools only: no agent and, unless asked, no databricks."""
    def use(with_databricks):
        dirs = [str(FAKE_DATABRICKS.parent)] if with_databricks else []
        monkeypatch.setenv("PATH", os.pathsep.join(dirs + ["/usr/bin", "/bin"]))
    return use


def installs_into_local_bin(home, name, text=None, link=None):
    def install(description, command):
        target = home / ".local" / "bin"
        target.mkdir(parents=True, exist_ok=True)
        if link:
            (target / name).symlink_to(link)
        else:
            make_stub(target, name, text)
    return install


def test_missing_claude_is_installed_with_the_curl_installer(home, workspace, logged_in, bare_path, mocker, capsys):
    bare_path(with_databricks=True)
    installer = mocker.patch.object(fmapi, "run_installer", side_effect=installs_into_local_bin(home, "claude", CLAUDE_STUB))
    assert fmapi.main(["setup", "--yes", "--host", workspace.url, "--profile", logged_in]) == 0
    installer.assert_called_once_with("Claude Code", "curl -fsSL https://claude.ai/install.sh | bash")
    assert (home / ".claude" / "settings.json").exists()


@pytest.mark.parametrize("platform, command", [
    ("linux", "curl -fsSL https://raw.githubusercontent.com/databricks/setup-cli/main/install.sh | sh"),
    ("darwin", "brew tap databricks/tap && brew install databricks"),
])
def test_missing_databricks_cli_is_installed_per_platform(home, workspace, bare_path, home_bin, mocker, monkeypatch, platform, command):
    bare_path(with_databricks=False)
    (home / ".local" / "bin").mkdir(parents=True)
    make_stub(home / ".local" / "bin", "claude", CLAUDE_STUB)
    monkeypatch.setattr(sys, "platform", platform)
    installer = mocker.patch.object(fmapi, "run_installer",
                                    side_effect=installs_into_local_bin(home, "databricks", link=FAKE_DATABRICKS))
    assert fmapi.main(["setup", "--yes", "--host", workspace.url, "--profile", "p1"]) == 0
    installer.assert_called_once_with("the Databricks CLI", command)
    # the helper remembers where the CLI was installed, so renewals find it without PATH
    spec = fmapi.spec_from_helper(str(home / ".claude" / "fmapi-key-helper.sh"))
    assert spec.cli == str(home / ".local" / "bin" / "databricks")


def test_a_failed_installer_stops_setup_with_the_command_to_run(home, workspace, bare_path, mocker, capsys):
    bare_path(with_databricks=True)
    fail = mocker.patch.object(fmapi, "run_installer", side_effect=fmapi.FmapiError(
        "installing Claude Code failed (exit status 7).", fix="Install it yourself (curl ...), then re-run fmapi."))
    assert fmapi.main(["setup", "--yes", "--host", workspace.url]) == 1
    err = capsys.readouterr().err
    assert "installing Claude Code failed" in err and "re-run fmapi" in err
    assert fail.called
    assert not (home / ".claude").exists()


def test_installers_run_with_the_users_umask_not_fmapis(tmp_path, monkeypatch):
    monkeypatch.setattr(fmapi, "INHERITED_UMASK", 0o022)
    os.umask(0o077)  # what fmapi itself runs with
    out = tmp_path / "umask"
    fmapi.run_installer("a test", "umask > '%s'" % out)
    assert out.read_text().strip() == "0022"  # what npm, brew or curl|bash would create files with


@pytest.mark.parametrize("agent, package, version", [
    ("opencode", "opencode-ai", "1.18.33"),
    ("copilot", "@github/copilot", "GitHub Copilot CLI 1.0.102."),
    ("pi", "@earendil-works/pi-coding-agent", "1.6.0"),
])
def test_a_missing_npm_agent_is_installed_from_its_npm_package(home, workspace, logged_in, bare_path, mocker, agent,
                                                                package, version):
    bare_path(with_databricks=True)
    stub = "#!/bin/sh\necho '%s'\n" % version
    installer = mocker.patch.object(fmapi, "run_installer", side_effect=installs_into_local_bin(home, agent, stub))
    assert fmapi.main(["setup", "--agent", agent, "--yes", "--host", workspace.url, "--profile", logged_in]) == 0
    installer.assert_called_once_with(fmapi.AGENTS[agent].title, "npm install -g %s" % package)
