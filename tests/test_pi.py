"""Pi through fmapi with a stand-in `pi`: what `fmapi setup --agent pi` writes where (the
provider in models.json, the defaults in settings.json, the helper), re-runs, PI_CODING_AGENT_DIR,
files fmapi cannot parse, a Node.js too old for Pi, and what uninstall gives back."""

import json
import os
import stat

from conftest import cache_of, make_stub, read_json, run_fmapi

import pytest

PI_STUB = "#!/bin/sh\necho '%s'\n"
ID = "databricks-fmapi"


@pytest.fixture
def pi_stub(home_bin):
    return make_stub(home_bin, "pi", PI_STUB % "1.6.0")


@pytest.fixture
def setup_pi(home, workspace, logged_in, pi_stub):
    def run(*extra, check=True, env=None):
        proc = run_fmapi("setup", "--agent", "pi", "--yes", "--host", workspace.url, "--profile", logged_in, *extra, env=env)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def test_setup_from_nothing(home, workspace, setup_pi):
    proc = setup_pi("--model", "databricks-gpt-5-2")
    agent_dir = home / ".pi" / "agent"
    provider = read_json(agent_dir / "models.json")["providers"][ID]
    helper = agent_dir / "fmapi-key-helper.sh"
    assert provider["apiKey"] == "!" + str(helper) and provider["authHeader"] is True
    assert provider["headers"] == {"x-databricks-use-coding-agent-mode": "true"}
    assert provider["models"] == [{"id": "databricks-gpt-5-2", "name": "databricks-gpt-5-2", "api": "openai-responses",
                                   "baseUrl": workspace.url + "/serving-endpoints"}]
    assert read_json(agent_dir / "settings.json") == {"defaultProvider": ID, "defaultModel": "databricks-gpt-5-2"}
    assert stat.S_IMODE(os.stat(helper).st_mode) == 0o700
    token = cache_of(agent_dir)["token"]
    assert token not in (agent_dir / "models.json").read_text()  # the key is never written into Pi's files
    run = __import__("subprocess").run(["/bin/sh", "-c", provider["apiKey"][1:]], capture_output=True, text=True)
    assert run.stdout == token + "\n"
    assert "pi -p" in proc.stdout


def test_each_family_gets_its_own_api_and_route(home, workspace, setup_pi):
    for model, api, path in (("databricks-claude-opus-4-6", "anthropic-messages", "/serving-endpoints/anthropic"),
                             ("databricks-gemini-3-pro", "google-generative-ai", "/serving-endpoints/gemini/v1beta"),
                             ("databricks-meta-llama-3-3-70b-instruct", "openai-completions", "/serving-endpoints")):
        setup_pi("--model", model)
        entry = read_json(home / ".pi" / "agent" / "models.json")["providers"][ID]["models"][0]
        assert (entry["id"], entry["api"], entry["baseUrl"]) == (model, api, workspace.url + path)


def test_pi_coding_agent_dir_is_honoured(home, workspace, setup_pi, tmp_path):
    elsewhere = tmp_path / "pi-dir"
    setup_pi(env={"PI_CODING_AGENT_DIR": str(elsewhere)})
    assert ID in read_json(elsewhere / "models.json")["providers"]
    assert not (home / ".pi").exists()
    proc = run_fmapi("--uninstall", "--yes", env={"PI_CODING_AGENT_DIR": str(elsewhere)})
    assert proc.returncode == 0, proc.stderr
    assert not elsewhere.exists()


def test_rerun_keeps_the_users_original_defaults_for_uninstall(home, workspace, setup_pi):
    agent_dir = home / ".pi" / "agent"
    agent_dir.mkdir(parents=True)
    settings = '{\n  "defaultProvider": "anthropic",\n  "defaultModel": "claude-opus-4-5"\n}\n'
    (agent_dir / "settings.json").write_text(settings)
    setup_pi()
    setup_pi("--model", "databricks-gpt-5-2")
    assert read_json(agent_dir / "settings.json")["defaultModel"] == "databricks-gpt-5-2"
    assert run_fmapi("--uninstall", "--yes").returncode == 0
    assert (agent_dir / "settings.json").read_text() == settings
    assert not (agent_dir / "models.json").exists()  # fmapi created it


def test_uninstall_keeps_a_default_the_user_changed_since(home, workspace, setup_pi):
    setup_pi()
    path = home / ".pi" / "agent" / "settings.json"
    data = read_json(path)
    data["defaultModel"] = "databricks-claude-opus-4-6"
    path.write_text(json.dumps(data))
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert read_json(path) == {"defaultModel": "databricks-claude-opus-4-6"}
    assert "defaultModel" in proc.stdout and "you changed it" in proc.stdout


def test_uninstall_finds_an_install_the_registry_lost(home, workspace, setup_pi):
    setup_pi()
    os.remove(home / ".local" / "share" / "fmapi" / "installs.json")
    proc = run_fmapi("--uninstall", "--yes", "--revoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (home / ".pi" / "agent").exists()
    assert not workspace.pats_with_comment_prefix("Pi FMAPI")


def test_unparsable_models_json_is_left_untouched(home, workspace, setup_pi):
    agent_dir = home / ".pi" / "agent"
    agent_dir.mkdir(parents=True)
    broken = b'{ "providers": { "x": } }'
    (agent_dir / "models.json").write_bytes(broken)
    proc = setup_pi(check=False)
    assert proc.returncode == 1
    assert "models.json is not valid JSON" in proc.stderr and "line 1" in proc.stderr
    assert (agent_dir / "models.json").read_bytes() == broken
    assert not workspace.requests_to("/api/2.0/token/create")


def test_providers_that_is_not_an_object_is_refused(home, workspace, setup_pi):
    agent_dir = home / ".pi" / "agent"
    agent_dir.mkdir(parents=True)
    (agent_dir / "models.json").write_text('{"providers": []}')
    proc = setup_pi(check=False)
    assert proc.returncode == 1 and '"providers" is []' in proc.stderr
    assert not workspace.requests_to("/api/2.0/token/create")


def test_too_old_pi_and_too_old_node_are_refused_with_the_fix(home, workspace, logged_in, home_bin):
    make_stub(home_bin, "pi", PI_STUB % "0.62.0")
    proc = run_fmapi("setup", "--agent", "pi", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 1
    assert "Pi 0.62.0 is too old: fmapi needs 0.63.0 or newer." in proc.stderr
    assert "npm install -g @earendil-works/pi-coding-agent@latest" in proc.stderr

    make_stub(home_bin, "pi", "#!/bin/sh\necho 'SyntaxError: ... enableCompileCache' >&2\nexit 1\n")
    make_stub(home_bin, "node", "#!/bin/sh\necho v20.20.2\n")
    proc = run_fmapi("setup", "--agent", "pi", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 1
    assert "Pi needs Node.js 22.19.0 or newer; `node` here is 20.20.2." in proc.stderr
    assert not workspace.requests_to("/api/2.0/token/create")
    assert not (home / ".pi").exists()


def test_concurrent_requests_after_expiry_mint_one_pat(home, workspace, setup_pi):
    """Pi runs the helper before every request, possibly several at once: one renewal serves them all."""
    import subprocess

    from conftest import expire_cached_pat

    setup_pi()
    agent_dir = home / ".pi" / "agent"
    old = expire_cached_pat(workspace, agent_dir)
    workspace.clear_requests()
    command = read_json(agent_dir / "models.json")["providers"][ID]["apiKey"][1:]
    runs = [subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE, text=True) for _ in range(6)]
    outputs = {run.communicate(timeout=60)[0] for run in runs}
    new = cache_of(agent_dir)["token"]
    assert outputs == {new + "\n"} and new != old["token"]
    assert len(workspace.requests_to("/api/2.0/token/create")) == 1


def test_uninstall_keeps_the_helper_while_models_json_cannot_be_cleaned(home, workspace, setup_pi):
    setup_pi()
    d = home / ".pi" / "agent"
    text = (d / "models.json").read_text()
    (d / "models.json").write_text(text + "oops")
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode != 0 and (d / "fmapi-key-helper.sh").exists()
    (d / "models.json").write_text(text)
    assert run_fmapi("--uninstall", "--yes").returncode == 0
    assert not d.exists()
