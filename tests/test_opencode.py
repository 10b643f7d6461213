"""OpenCode through fmapi with a stand-in `opencode`: which config file setup edits (the one
OpenCode itself updates), XDG_CONFIG_HOME, the provider per model family, the plugin (valid
JavaScript naming the helper, never a token), re-runs, files fmapi cannot parse, an old OpenCode,
and what uninstall gives back."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import cache_of, make_stub, run_fmapi

import fmapi

ID = "databricks-fmapi"
STUB = "#!/bin/sh\necho '%s'\n"


@pytest.fixture
def opencode_stub(home_bin):
    return make_stub(home_bin, "opencode", STUB % "1.18.33")


@pytest.fixture
def setup_opencode(home, workspace, logged_in, opencode_stub):
    def run(*extra, check=True, env=None):
        proc = run_fmapi("setup", "--agent", "opencode", "--yes", "--host", workspace.url, "--profile", logged_in,
                         *extra, env=env)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def config_dir(home):
    return home / ".config" / "opencode"


def load(path):
    return fmapi.jsonc_load(path.read_text())


def test_setup_from_nothing_creates_opencode_jsonc_and_the_plugin(home, workspace, setup_opencode):
    proc = setup_opencode("--model", "databricks-claude-opus-4-6")
    d = config_dir(home)
    config = load(d / "opencode.jsonc")
    assert config["model"] == config["small_model"] == ID + "/databricks-claude-opus-4-6"
    assert config["provider"][ID] == {
        "npm": "@ai-sdk/anthropic", "name": "Databricks FMAPI",
        "options": {"baseURL": workspace.url + "/serving-endpoints/anthropic/v1", "apiKey": "set-by-the-fmapi-plugin",
                    "headers": {"x-databricks-use-coding-agent-mode": "true"}},
        "models": {"databricks-claude-opus-4-6": {"name": "databricks-claude-opus-4-6"}}}
    plugin = (d / "plugins" / "fmapi-databricks.js").read_text()
    assert json.dumps(str(d / "fmapi-key-helper.sh")) in plugin
    token = cache_of(d)["token"]
    assert token not in plugin and token not in (d / "opencode.jsonc").read_text()
    assert "opencode run" in proc.stdout


@pytest.mark.skipif(not shutil.which("node"), reason="checking the plugin's syntax needs node")
def test_the_plugin_is_valid_javascript(home, workspace, setup_opencode, tmp_path):
    setup_opencode()
    copy = tmp_path / "plugin.mjs"
    copy.write_text((config_dir(home) / "plugins" / "fmapi-databricks.js").read_text())
    check = subprocess.run(["node", "--check", str(copy)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("existing, edited", [
    (("opencode.json",), "opencode.json"),
    (("config.json",), "config.json"),
    (("config.json", "opencode.json", "opencode.jsonc"), "opencode.jsonc"),
])
def test_the_file_opencode_itself_updates_is_edited(home, workspace, setup_opencode, existing, edited):
    d = config_dir(home)
    d.mkdir(parents=True)
    for name in existing:
        (d / name).write_text('{"theme": "%s"}\n' % name)
    setup_opencode()
    for name in existing:
        data = load(d / name)
        assert (ID in data.get("provider", {})) == (name == edited)
    assert run_fmapi("--uninstall", "--yes").returncode == 0
    for name in existing:
        assert (d / name).read_text() == '{"theme": "%s"}\n' % name


def test_xdg_config_home_is_honoured(home, workspace, setup_opencode, tmp_path):
    elsewhere = tmp_path / "xdg"
    setup_opencode(env={"XDG_CONFIG_HOME": str(elsewhere)})
    assert ID in load(elsewhere / "opencode" / "opencode.jsonc")["provider"]
    assert not config_dir(home).exists()
    assert run_fmapi("--uninstall", "--yes", env={"XDG_CONFIG_HOME": str(elsewhere)}).returncode == 0
    assert not (elsewhere / "opencode").exists()


def test_each_family_gets_its_sdk(home, workspace, setup_opencode):
    from fakeworkspace import make_endpoint

    workspace.serving_endpoints.append(make_endpoint("databricks-gpt-oss-120b", display_name="GPT OSS 120B"))
    for model, npm, path in (("databricks-gpt-5-2", "@ai-sdk/openai", "/serving-endpoints"),
                             ("databricks-gemini-3-pro", "@ai-sdk/google", "/serving-endpoints/gemini/v1beta"),
                             ("databricks-gpt-oss-120b", "@ai-sdk/openai-compatible", "/serving-endpoints")):
        setup_opencode("--model", model)
        provider = load(config_dir(home) / "opencode.jsonc")["provider"][ID]
        assert (provider["npm"], provider["options"]["baseURL"]) == (npm, workspace.url + path)
        assert list(provider["models"]) == [model]


def test_rerun_then_uninstall_restores_the_users_model_and_keeps_a_later_change(home, workspace, setup_opencode):
    d = config_dir(home)
    d.mkdir(parents=True)
    original = '{\n  // mine\n  "model": "anthropic/claude-sonnet-4-5",\n  "small_model": "anthropic/claude-haiku-4-5"\n}\n'
    (d / "opencode.jsonc").write_text(original)
    setup_opencode()
    setup_opencode("--model", "databricks-gpt-5-2")
    assert run_fmapi("--uninstall", "--yes").returncode == 0
    assert (d / "opencode.jsonc").read_text() == original

    setup_opencode()
    text = (d / "opencode.jsonc").read_text().replace('"small_model": "%s/databricks-claude-sonnet-4-6"' % ID,
                                                      '"small_model": "anthropic/claude-haiku-4-5"')
    (d / "opencode.jsonc").write_text(text)
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert load(d / "opencode.jsonc") == {"model": "anthropic/claude-sonnet-4-5", "small_model": "anthropic/claude-haiku-4-5"}


def test_uninstall_finds_an_install_the_registry_lost(home, workspace, setup_opencode):
    d = config_dir(home)
    d.mkdir(parents=True)
    (d / "opencode.jsonc").write_text('{\n  "theme": "x"\n}\n')
    setup_opencode()
    os.remove(home / ".local" / "share" / "fmapi" / "installs.json")
    proc = run_fmapi("--uninstall", "--yes", "--revoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (d / "opencode.jsonc").read_text() == '{\n  "theme": "x"\n}\n'
    assert sorted(os.listdir(d)) == ["opencode.jsonc"]
    assert not workspace.pats_with_comment_prefix("OpenCode FMAPI")


def test_unparsable_config_and_a_provider_that_is_not_an_object_are_refused(home, workspace, setup_opencode):
    d = config_dir(home)
    d.mkdir(parents=True)
    for text, said in (('{\n  "model": "x",\n  /* open\n', "line 3"), ('{"provider": "x"}', '"provider" is "x"')):
        (d / "opencode.jsonc").write_text(text)
        proc = setup_opencode(check=False)
        assert proc.returncode == 1 and said in proc.stderr
        assert (d / "opencode.jsonc").read_text() == text
    assert not workspace.requests_to("/api/2.0/token/create")
    assert not (d / "plugins").exists()


def test_too_old_opencode_is_refused(home, workspace, logged_in, home_bin):
    make_stub(home_bin, "opencode", STUB % "1.17.0")
    proc = run_fmapi("setup", "--agent", "opencode", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 1
    assert "OpenCode 1.17.0 is too old: fmapi needs 1.18.33 or newer." in proc.stderr
    assert "npm install -g opencode-ai@latest" in proc.stderr


def test_uninstall_keeps_plugin_and_helper_while_the_config_cannot_be_cleaned(home, workspace, setup_opencode):
    setup_opencode()
    d = config_dir(home)
    text = (d / "opencode.jsonc").read_text()
    (d / "opencode.jsonc").write_text(text + "oops")
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode != 0 and "opencode.jsonc is not valid JSON" in proc.stdout + proc.stderr
    assert (d / "plugins" / "fmapi-databricks.js").exists() and (d / "fmapi-key-helper.sh").exists()
    (d / "opencode.jsonc").write_text(text)  # fixed: the next uninstall finishes the job
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not d.exists()
