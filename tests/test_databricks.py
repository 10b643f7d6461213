"""Section 6 (Databricks): the .databrickscfg reader, the one CLI runner, and setup and the helper
with the CLI profiles people really have (issue 11, "Profiles"; replays F3, F4, F5, F10, F11)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROFILE, age_cache, cache_of, databricks_calls, make_stub, read_json, run_databricks, run_fmapi

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fmapi  # noqa: E402

OTHER_HOST = "https://other-ws.cloud.databricks.com"


@pytest.fixture
def claude_stub(home_bin):
    return make_stub(home_bin, "claude", "#!/bin/sh\necho '2.1.331 (Claude Code)'\n")


def setup(*args, env=None):
    return run_fmapi("setup", "--yes", *args, env=env)


def helper(home, env=None):
    return subprocess.run(["/bin/sh", "-c", str(home / ".claude" / "fmapi-key-helper.sh")], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def logins(tmp_path):
    return [argv for argv in databricks_calls(tmp_path) if argv[:2] == ["auth", "login"]]


def assert_every_cli_call_names_a_profile(tmp_path):
    for argv in databricks_calls(tmp_path):
        if argv[:1] == ["auth"]:
            assert "--profile" in argv, argv


# --- 6a: the reader --------------------------------------------------------------------


def test_reader_keeps_default_and_skips_settings(home):
    (home / ".databrickscfg").write_text(
        "[DEFAULT]\nhost = https://a.cloud.databricks.com\ntoken = dapiX\n\n"
        "[__settings__]\ndefault_profile = me\n\n"
        "[me]\nhost = https://a.cloud.databricks.com/\n\n"
        "[sp]\nhost = https://a.cloud.databricks.com\nclient_id = c\nclient_secret = s\n\n"
        "[acme.prod]\nhost = https://a.cloud.databricks.com\nauth_type = databricks-cli\n\n"
        "[az]\nhost = https://a.cloud.databricks.com\nauth_type = azure-cli\n")
    profiles, settings = fmapi.read_databrickscfg()
    assert list(profiles) == ["DEFAULT", "me", "sp", "acme.prod", "az"]
    assert settings == {"default_profile": "me"}
    kinds = {name: fmapi.profile_kind(keys) for name, keys in profiles.items()}
    assert kinds == {"DEFAULT": "pat", "me": "u2m", "sp": "m2m", "acme.prod": "u2m", "az": "other"}
    # [__settings__] default_profile wins among the browser-login profiles of the host
    assert fmapi.default_profile("https://a.cloud.databricks.com") == "me"


def test_a_derived_name_never_collides_with_an_existing_profile(home):
    (home / ".databrickscfg").write_text("[127-0-0-1-8080]\nhost = https://elsewhere.cloud.databricks.com\n")
    assert fmapi.default_profile("http://127.0.0.1:8080") == "127-0-0-1-8080-2"


# --- F3: [DEFAULT] is an ordinary profile ----------------------------------------------


def test_default_of_another_workspace_is_never_repointed(home, workspace, claude_stub, tmp_path):
    cfg = home / ".databrickscfg"
    cfg.write_text("[DEFAULT]\nhost  = %s\ntoken = dapiFAKEOTHER\n" % OTHER_HOST)
    before = cfg.read_bytes()
    proc = setup("--host", workspace.url, "--profile", "DEFAULT")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "CLI profile 'DEFAULT' belongs to %s" % OTHER_HOST in proc.stderr
    assert "--profile 127-0-0-1-%d" % workspace.port in proc.stderr
    assert cfg.read_bytes() == before  # host and token kept
    assert not logins(tmp_path) and not workspace.pat_values()


def test_default_signed_in_to_the_workspace_is_found(home, workspace, claude_stub, tmp_path):
    assert run_databricks("auth", "login", "--host", workspace.url, "--profile", "DEFAULT").returncode == 0
    proc = setup("--host", workspace.url)
    assert proc.returncode == 0, proc.stderr
    assert "profile DEFAULT on" in proc.stdout
    assert len(logins(tmp_path)) == 1  # only the test's own sign-in: fmapi used DEFAULT's session
    assert read_json(fmapi_registry(home))["installs"][str(home / ".claude")]["profile"] == "DEFAULT"


def fmapi_registry(home):
    return home / ".local" / "share" / "fmapi" / "installs.json"


# --- F4: PAT and service-principal profiles are never signed in over ------------------


def test_a_pat_profile_for_the_host_is_not_chosen(home, workspace, claude_stub, tmp_path):
    cfg = home / ".databrickscfg"
    cfg.write_text("[a-pat]\nhost  = %s\ntoken = dapiMYOWNPAT0000\n" % workspace.url)
    proc = setup("--host", workspace.url)
    assert proc.returncode == 0, proc.stderr
    text = cfg.read_text()
    assert "[a-pat]\nhost  = %s\ntoken = dapiMYOWNPAT0000\n" % workspace.url in text  # untouched
    assert [argv for argv in databricks_calls(tmp_path) if "a-pat" in argv] == []
    assert "[127-0-0-1-%d]" % workspace.port in text  # a profile of its own
    assert_every_cli_call_names_a_profile(tmp_path)


def test_the_users_own_oauth_profile_beats_a_service_principal(home, workspace, claude_stub, tmp_path):
    assert run_databricks("auth", "login", "--host", workspace.url, "--profile", "zz-me").returncode == 0
    cfg = home / ".databrickscfg"
    cfg.write_text("[a-sp]\nhost = %s\nclient_id = 1234\nclient_secret = dose-secret\n\n" % workspace.url + cfg.read_text())
    proc = setup("--host", workspace.url)
    assert proc.returncode == 0, proc.stderr
    assert "profile zz-me on" in proc.stdout
    assert "client_secret = dose-secret" in cfg.read_text()
    assert [argv for argv in databricks_calls(tmp_path) if "a-sp" in argv] == []


@pytest.mark.parametrize("section, kind", [
    ("token = dapiMYOWNPAT0000", "personal access token profile"),
    ("client_id = 1234\nclient_secret = dose-secret", "service-principal (M2M) profile"),
])
def test_naming_a_pat_or_m2m_profile_stops_with_its_kind_and_a_free_name(home, workspace, claude_stub, tmp_path,
                                                                       section, kind):
    cfg = home / ".databrickscfg"
    cfg.write_text("[theirs]\nhost = %s\n%s\n" % (workspace.url, section))
    before = cfg.read_bytes()
    proc = setup("--host", workspace.url, "--profile", "theirs")
    assert proc.returncode == 2
    assert "CLI profile 'theirs' is a %s" % kind in proc.stderr
    assert "--profile 127-0-0-1-%d" % workspace.port in proc.stderr
    assert cfg.read_bytes() == before and databricks_calls(tmp_path) == []
    assert not (home / ".claude").exists()


def test_an_m2m_profile_the_cli_refuses_is_not_called_an_expired_session(home, workspace, tmp_path):
    (home / ".databrickscfg").write_text("[a-sp]\nhost = %s\nclient_id = 1\nclient_secret = 2\n" % workspace.url)
    with pytest.raises(fmapi.CliError) as err:
        fmapi.oauth_token(workspace.url, "a-sp")
    assert "service-principal (M2M)" in err.value.message
    assert "auth login" not in err.value.render()


# --- F10: any profile name the CLI accepts ---------------------------------------------


def test_a_signed_in_profile_with_a_dot_is_used(home, workspace, claude_stub, tmp_path):
    assert run_databricks("auth", "login", "--host", workspace.url, "--profile", "acme.prod").returncode == 0
    proc = setup("--host", workspace.url)
    assert proc.returncode == 0, proc.stderr
    assert "profile acme.prod on" in proc.stdout
    assert len(logins(tmp_path)) == 1
    age_cache(home / ".claude", 10)
    renewed = helper(home)
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() in workspace.pat_values()


# --- F11: DATABRICKS_CONFIG_FILE is recorded and passed -------------------------------


def test_config_file_in_effect_at_setup_is_used_by_the_helper_without_it(home, workspace, claude_stub, monkeypatch):
    cfg = home / "cfg" / "databricks.cfg"
    cfg.parent.mkdir()
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(cfg))
    assert run_databricks("auth", "login", "--host", workspace.url, "--profile", "p22").returncode == 0
    assert not (home / ".databrickscfg").exists()
    assert setup("--host", workspace.url, "--profile", "p22").returncode == 0
    monkeypatch.delenv("DATABRICKS_CONFIG_FILE")
    age_cache(home / ".claude", 60)
    proc = helper(home)  # as an agent started from an IDE, without the variable
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in workspace.pat_values() and proc.stdout.strip() == cache_of(home / ".claude")["token"]
    # a re-run from a shell without the variable keeps it
    assert setup().returncode == 0
    assert read_json(fmapi_registry(home))["installs"][str(home / ".claude")]["config_file"] == str(cfg)


# --- ambient DATABRICKS_* never change the credential ---------------------------------


AMBIENT = {
    "DATABRICKS_HOST": OTHER_HOST,
    "DATABRICKS_TOKEN": "dapiAMBIENT0000",
    "DATABRICKS_CONFIG_PROFILE": "somebody-else",
    "DATABRICKS_AUTH_TYPE": "pat",
    "DATABRICKS_CLIENT_ID": "ambient-sp",
    "DATABRICKS_CLIENT_SECRET": "ambient-secret",
}


@pytest.mark.parametrize("name", sorted(AMBIENT))
def test_an_ambient_variable_does_not_change_the_credential(home, workspace, logged_in, claude_stub, tmp_path, name):
    proc = setup("--host", workspace.url, "--profile", logged_in, env={name: AMBIENT[name]})
    assert proc.returncode == 0, proc.stderr
    age_cache(home / ".claude", 10)
    renewed = helper(home, env=dict(os.environ, **{name: AMBIENT[name]}))
    assert renewed.returncode == 0, renewed.stderr
    assert workspace.find_pat(renewed.stdout.strip())["created_by_bearer"] in workspace.oauth_access_tokens
    assert_every_cli_call_names_a_profile(tmp_path)


def test_an_ambient_config_file_does_not_move_an_install_that_recorded_none(home, workspace, logged_in, claude_stub):
    assert setup("--host", workspace.url, "--profile", logged_in).returncode == 0
    stray = home / "stray.cfg"
    stray.write_text("[%s]\nhost = %s\ntoken = dapiSTRAY\n" % (logged_in, OTHER_HOST))
    age_cache(home / ".claude", 10)
    proc = helper(home, env=dict(os.environ, DATABRICKS_CONFIG_FILE=str(stray)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in workspace.pat_values()


# --- F5: the CLI's token-cache lock race is retried -----------------------------------


def test_the_lock_race_is_retried_not_reported_as_an_expired_session(home, workspace, logged_in, claude_stub, tmp_path,
                                                                     monkeypatch):
    race = tmp_path / "race"
    race.write_text("1")
    monkeypatch.setenv("FAKE_DATABRICKS_RACE_FILE", str(race))
    proc = setup("--host", workspace.url, "--profile", logged_in)  # setup's own `auth token` hits it once
    assert proc.returncode == 0, proc.stderr
    race.write_text("2")
    age_cache(home / ".claude", 10)
    renewed = helper(home)
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() in workspace.pat_values()
    assert race.read_text() == "0"


def test_a_lock_race_that_does_not_clear_is_not_called_a_dead_session(home, workspace, logged_in, claude_stub,
                                                                      tmp_path, monkeypatch):
    assert setup("--host", workspace.url, "--profile", logged_in).returncode == 0
    race = tmp_path / "race"
    race.write_text("99")
    monkeypatch.setenv("FAKE_DATABRICKS_RACE_FILE", str(race))
    age_cache(home / ".claude", 10)
    proc = helper(home)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "busy token cache" in proc.stderr
    assert "expired" not in proc.stderr and "auth login" not in proc.stderr
    assert int(race.read_text()) == 99 - fmapi.CLI_RACE_TRIES


# --- the fake CLI itself learned these shapes -----------------------------------------


def test_fake_cli_shapes(home, workspace, logged_in, tmp_path):
    (home / ".databrickscfg").write_text((home / ".databrickscfg").read_text()
                                         + "\n[sp]\nhost = %s\nclient_id = a\nclient_secret = b\n" % workspace.url)
    r = run_databricks("auth", "token", "--profile", "sp")
    assert r.returncode == 1 and 'profile "sp" uses M2M authentication (client_id/client_secret).' in r.stderr
    r = run_databricks("auth", "token", "--profile", PROFILE, "--force-refresh", env={"FAKE_DATABRICKS_VERSION": "0.295.0"})
    assert r.returncode == 1 and "unknown flag: --force-refresh" in r.stderr
    r = run_databricks("auth", "token", "--profile", PROFILE, env={"DATABRICKS_TOKEN": "dapiX"})
    assert r.returncode == 1 and "more than one authorization method configured" in r.stderr
    race = tmp_path / "race"
    race.write_text("1")
    r = run_databricks("auth", "token", "--profile", PROFILE, env={"FAKE_DATABRICKS_RACE_FILE": str(race)})
    assert r.returncode == 1 and r.stderr == "Error: token refresh: cache update: exit status 45\n"
    assert run_databricks("auth", "token", "--profile", PROFILE,
                          env={"FAKE_DATABRICKS_RACE_FILE": str(race)}).returncode == 0
    # a login over a service-principal profile drops its keys, as databricks/cli#484 reports
    assert run_databricks("auth", "login", "--host", workspace.url, "--profile", "sp").returncode == 0
    assert "client_secret" not in (home / ".databrickscfg").read_text()
    out = json.loads(run_databricks("auth", "token", "--profile", PROFILE, "--force-refresh").stdout)
    assert workspace.credential_kind(out["access_token"]) == "oauth"
