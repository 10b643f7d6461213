"""GitHub Copilot CLI through fmapi with a stand-in `copilot`: setup writes only fmapi's helper
into $COPILOT_HOME, `fmapi copilot ARGS...` starts Copilot with the provider environment (the
helper as its key command, never a token) and every argument untouched, conflicting variables are
left out, an old Copilot is refused with the upgrade command, and uninstall removes fmapi's files only."""

import os
import shlex
import stat

import pytest

from conftest import cache_of, make_stub, run_fmapi

# The stand-in prints its arguments and the provider environment, then what its key command prints.
STUB = """#!/bin/sh
if [ "$1" = "--version" ]; then echo 'GitHub Copilot CLI %s.'; exit 0; fi
echo "args: $*"
env | grep '^COPILOT_' | sort
echo "key: $(sh -c "$COPILOT_PROVIDER_API_KEY_COMMAND")"
"""


@pytest.fixture
def copilot_stub(home_bin):
    return make_stub(home_bin, "copilot", STUB % "1.0.102")


@pytest.fixture
def setup_copilot(home, workspace, logged_in, copilot_stub):
    def run(*extra, env=None):
        proc = run_fmapi("setup", "--agent", "copilot", "--yes", "--host", workspace.url, "--profile", logged_in,
                         *extra, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def test_setup_writes_the_helper_only_and_prints_the_variables(home, workspace, setup_copilot):
    proc = setup_copilot()
    directory = home / ".copilot"
    assert sorted(os.listdir(directory)) == [".fmapi-pat-cache", ".fmapi-pat-cache.lock", ".fmapi-pat-ledger",
                                           "fmapi-key-helper.sh"]
    assert stat.S_IMODE(os.stat(directory / "fmapi-key-helper.sh").st_mode) == 0o700
    helper = str(directory / "fmapi-key-helper.sh")
    assert "export COPILOT_PROVIDER_API_KEY_COMMAND=%s" % shlex.quote(helper) in proc.stdout
    assert cache_of(directory)["token"] not in proc.stdout


def test_launcher_environment_and_arguments(home, workspace, setup_copilot):
    setup_copilot("--model", "databricks-claude-sonnet-4-6")
    proc = run_fmapi("copilot", "-p", "hi there", "--model", "x", env={"COPILOT_PROVIDER_API_KEY": "sk-old",
                                                                       "COPILOT_PROVIDER_BEARER_TOKEN": "b"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "args: -p hi there --model x"
    env = dict(line.split("=", 1) for line in lines[1:-1])
    assert env == {
        "COPILOT_MODEL": "databricks-claude-sonnet-4-6",
        "COPILOT_PROVIDER_API_KEY_COMMAND": shlex.quote(str(home / ".copilot" / "fmapi-key-helper.sh")),
        "COPILOT_PROVIDER_BASE_URL": workspace.url + "/serving-endpoints",
        "COPILOT_PROVIDER_HEADERS": "x-databricks-use-coding-agent-mode: true",
        "COPILOT_PROVIDER_TYPE": "openai",
        "COPILOT_PROVIDER_WIRE_API": "completions",
    }
    assert lines[-1] == "key: " + cache_of(home / ".copilot")["token"]


def test_gpt_5_models_use_the_responses_api_and_copilot_home_is_honoured(home, workspace, setup_copilot, tmp_path):
    elsewhere = tmp_path / "copilot-home"
    setup_copilot("--model", "databricks-gpt-5-2", env={"COPILOT_HOME": str(elsewhere)})
    assert (elsewhere / "fmapi-key-helper.sh").exists() and not (home / ".copilot").exists()
    proc = run_fmapi("copilot", env={"COPILOT_HOME": str(elsewhere)})
    assert "COPILOT_PROVIDER_WIRE_API=responses" in proc.stdout
    proc = run_fmapi("--uninstall", "--yes", env={"COPILOT_HOME": str(elsewhere)})
    assert proc.returncode == 0, proc.stderr
    assert not elsewhere.exists()


def test_launcher_without_an_install_says_how_to_set_it_up(home, copilot_stub):
    proc = run_fmapi("copilot", "-p", "hi")
    assert proc.returncode == 1
    assert "fmapi setup --agent copilot" in proc.stderr


def test_uninstall_keeps_copilots_own_files(home, workspace, setup_copilot):
    setup_copilot()
    (home / ".copilot" / "config.json").write_text("{}\n")
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(home / ".copilot") == ["config.json"]


def test_too_old_copilot_is_refused(home, workspace, logged_in, home_bin):
    make_stub(home_bin, "copilot", STUB % "1.0.40")
    proc = run_fmapi("setup", "--agent", "copilot", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 1
    assert "GitHub Copilot CLI 1.0.40 is too old: fmapi needs 1.0.102 or newer." in proc.stderr
    assert "npm install -g @github/copilot@latest" in proc.stderr
    assert not workspace.requests_to("/api/2.0/token/create")


def test_launcher_with_a_dead_session_says_what_to_run_and_does_not_start_copilot(home, workspace, logged_in, setup_copilot):
    from conftest import expire_cached_pat, expire_cli_session

    setup_copilot()
    expire_cached_pat(workspace, home / ".copilot")
    expire_cli_session(home, workspace)
    proc = run_fmapi("copilot", "-p", "hi")
    assert proc.returncode != 0 and "args:" not in proc.stdout
    assert "databricks auth login --host %s --profile %s" % (workspace.url, logged_in) in proc.stderr


def test_launcher_warns_about_copilots_own_provider_registry(home, workspace, setup_copilot):
    setup_copilot()
    (home / ".copilot" / "providers.json").write_text('{"providers": []}\n')
    proc = run_fmapi("copilot")
    assert proc.returncode == 0 and "providers.json" in proc.stderr
