"""Seeing and fixing a setup (issue 13): `fmapi models`, `status`, `doctor`, the model checks,
and a command line that behaves like a Unix tool (help, unknown commands, closed pipes,
--verbose), against the fake workspace (plain HTTP, and HTTPS with a self-signed CA)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FMAPI, make_stub, run_databricks, run_fmapi
from fakeworkspace import EMBEDDINGS_ENDPOINT, NOT_READY_ENDPOINT, FakeWorkspace, make_endpoint

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fmapi  # noqa: E402

COMMANDS = ("setup", "token", "uninstall", "gemini", "status", "models", "help")


@pytest.fixture
def stubs(home_bin):
    """Stand-ins for the three agents, each reporting a version fmapi supports."""
    make_stub(home_bin, "claude", "echo '2.1.331 (Claude Code)'\n")
    make_stub(home_bin, "codex", "echo 'codex-cli 0.169.0'\n")
    make_stub(home_bin, "gemini", "echo '0.61.0'\n")
    return home_bin


def setup(workspace, profile, *extra):
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", profile, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def oauth_tokens(workspace):
    with workspace.lock:
        return list(workspace.oauth_access_tokens) + list(workspace.oauth_refresh_tokens)


def pat_values(workspace):
    with workspace.lock:
        return [t["token_value"] for t in workspace.tokens.values()]


# --- the command line --------------------------------------------------------------------


def test_each_commands_usage_line_names_only_that_command(home):
    for name in COMMANDS:
        if name == "gemini":
            continue  # its arguments go to gemini
        out = run_fmapi(name, "--help").stdout
        assert out.startswith("usage: fmapi %s [-h]" % name), out[:120]
        assert run_fmapi("help", name).stdout == out


def test_help_shows_no_placeholder_url(home):
    for args in (["--help"], ["help"], ["setup", "--help"]):
        out = run_fmapi(*args).stdout
        assert "OWNER" not in out and "github.com" not in out, out
    assert "fmapi help COMMAND" in run_fmapi("help").stdout


def test_unknown_command_lists_the_commands_and_the_closest(home):
    proc = run_fmapi("sttaus")
    assert proc.returncode == 2
    assert "'sttaus' is not a command" in proc.stderr
    for name in COMMANDS:
        assert name in proc.stderr
    assert "Did you mean: fmapi status?" in proc.stderr
    proc = run_fmapi("help", "modles")
    assert proc.returncode == 2 and "fmapi help models" in proc.stderr
    assert proc.stdout == ""


def run_into_closed_pipe(*args):
    """fmapi with stdout on a pipe whose reader is already gone (what `| head -1` leaves)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, str(FMAPI), *args], stdout=write_end, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=60)
    finally:
        os.close(write_end)
    return proc


@pytest.mark.parametrize("args", [["--help"], ["help", "setup"], ["status"], ["models", "--json"], ["models"]])
def test_a_closed_pipe_ends_quietly(home, workspace, logged_in, stubs, args):
    setup(workspace, logged_in)
    proc = run_into_closed_pipe(*args)
    assert proc.stderr == "", proc.stderr
    assert proc.returncode in (0, 141)


def test_status_into_head_prints_one_line_and_nothing_on_stderr(home, workspace, logged_in, stubs):
    setup(workspace, logged_in)
    setup(workspace, logged_in, "--agent", "codex")
    proc = subprocess.run("%s %s status | head -1" % (sys.executable, FMAPI), shell=True, capture_output=True,
                          text=True, timeout=60)
    assert proc.stderr == "" and len(proc.stdout.splitlines()) == 1


def test_verbose_logs_every_cli_call_and_request_but_no_token(home, workspace, logged_in, stubs):
    proc = run_fmapi("--verbose", "setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "[verbose]" in line]
    assert any("cli: " in line and "auth token -o json --profile %s -> 0" % logged_in in line for line in lines)
    assert any("http: POST /api/2.0/token/create -> 200" in line for line in lines)
    secrets = oauth_tokens(workspace) + pat_values(workspace)
    assert secrets
    for secret in secrets:
        assert secret not in proc.stderr and secret not in proc.stdout
    # after the command works too, and every command takes it
    proc = run_fmapi("models", "--verbose")
    assert "http: GET /api/2.0/serving-endpoints -> 200" in proc.stderr
    for name in ("status", "token", "uninstall"):
        assert "--verbose" in run_fmapi(name, "--help").stdout
    quiet = run_fmapi("models")
    assert "[verbose]" not in quiet.stderr


# --- endpoint classification ------------------------------------------------------------


def test_classification_prefers_the_workspaces_api_types_over_the_name():
    says_anthropic = make_endpoint("team-sonnet", api_types=["anthropic/v1/messages", "mlflow/v1/chat/completions"])
    says_chat_only = make_endpoint("databricks-claude-legacy", api_types=["mlflow/v1/chat/completions"])
    silent = make_endpoint("databricks-gpt-5-2")
    embeddings = make_endpoint(EMBEDDINGS_ENDPOINT, task="llm/v1/embeddings")
    assert fmapi.classify_endpoint(says_anthropic)["apis"] == ["anthropic", "chat"]
    assert fmapi.classify_endpoint(says_anthropic)["source"] == "api_types"
    assert fmapi.classify_endpoint(says_chat_only)["apis"] == ["chat"]
    def first_three(endpoint):  # the agents that speak one API each
        return [a for a in fmapi.agents_for(fmapi.classify_endpoint(endpoint)) if a in ("claude", "codex", "gemini")]

    assert first_three(says_chat_only) == []
    assert "pi" in fmapi.agents_for(fmapi.classify_endpoint(says_chat_only))  # Pi speaks chat completions too
    assert first_three(says_anthropic) == ["claude"]
    assert first_three(silent) == ["codex"]
    assert fmapi.classify_endpoint(silent)["source"] == "name"
    assert fmapi.classify_endpoint(embeddings)["apis"] == []
    not_ready = fmapi.classify_endpoint(make_endpoint("x", ready=False, config_update="IN_PROGRESS"))
    assert (not_ready["ready"], not_ready["state"], not_ready["config_update"]) == (False, "NOT_READY", "IN_PROGRESS")
    older = {"name": "databricks-gemini-3-pro", "task": "llm/v1/chat", "state": {"update_state": "UPDATE_FAILED"}}
    assert fmapi.classify_endpoint(older)["config_update"] == "UPDATE_FAILED"
    assert first_three(older) == ["gemini"]


# --- fmapi models -----------------------------------------------------------------------


def test_models_lists_chat_endpoints_first_and_marks_the_configured(home, workspace, logged_in, stubs):
    workspace.serving_endpoints.append(make_endpoint("team-sonnet", api_types=["anthropic/v1/messages"]))
    setup(workspace, logged_in, "--sonnet", "team-sonnet")
    proc = run_fmapi("models")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert workspace.url in lines[0]
    names = [line[2:].split()[0] for line in lines[1:]]
    assert names.index("databricks-gpt-5-2") < names.index(EMBEDDINGS_ENDPOINT)
    assert names.index(NOT_READY_ENDPOINT) < names.index(EMBEDDINGS_ENDPOINT)
    row = {line[2:].split()[0]: line for line in lines[1:]}
    assert row["team-sonnet"].startswith("* ") and row["team-sonnet"].rstrip().endswith(" claude,opencode,pi")
    assert row["databricks-claude-opus-4-6"].startswith("* ")
    assert row["databricks-gpt-5-2"].startswith("  ") and row["databricks-gpt-5-2"].rstrip().endswith(" codex,copilot,opencode,pi")
    assert "NOT_READY" in row[NOT_READY_ENDPOINT]


def test_models_json_shape_and_agent_filter(home, workspace, logged_in, stubs):
    setup(workspace, logged_in, "--agent", "codex")
    proc = run_fmapi("models", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"version", "host", "profile", "agent", "endpoints"}
    assert (data["version"], data["host"], data["profile"], data["agent"]) == (1, workspace.url, logged_in, None)
    keys = {"name", "task", "state", "ready", "config_update", "apis", "api_source", "agents", "configured"}
    for row in data["endpoints"]:
        assert set(row) == keys
    by_name = {row["name"]: row for row in data["endpoints"]}
    assert by_name["databricks-gpt-5-2"]["configured"] == ["codex.model"]
    assert by_name["databricks-gpt-5-2"]["agents"] == ["codex", "copilot", "opencode", "pi"]
    assert by_name[EMBEDDINGS_ENDPOINT]["agents"] == [] and by_name[EMBEDDINGS_ENDPOINT]["apis"] == []
    assert by_name[NOT_READY_ENDPOINT]["ready"] is False
    only = json.loads(run_fmapi("models", "--agent", "gemini", "--json").stdout)
    assert {row["name"] for row in only["endpoints"]} == {"databricks-gemini-2-5-pro", "databricks-gemini-3-pro"}


def test_models_without_an_install_takes_a_profile(home, workspace, logged_in):
    proc = run_fmapi("models")
    assert proc.returncode == 2 and "--profile" in proc.stderr
    proc = run_fmapi("models", "--profile", logged_in, "--agent", "claude")
    assert proc.returncode == 0, proc.stderr
    assert "databricks-claude-haiku-4-5" in proc.stdout and "gpt" not in proc.stdout
    proc = run_fmapi("models", "--profile", "nobody")
    assert proc.returncode == 2 and "'nobody' does not exist" in proc.stderr


def test_models_with_a_dead_session_says_how_to_sign_in(home, workspace, logged_in, stubs):
    from conftest import expire_cli_session

    setup(workspace, logged_in)
    expire_cli_session(home, workspace)
    proc = run_fmapi("models")
    assert proc.returncode == 1 and "databricks auth login" in proc.stderr


# --- TLS: a workspace behind a certificate fmapi does not know ---------------------------


@pytest.fixture(scope="module")
def company_ca(tmp_path_factory):
    """A private CA (as a TLS-inspecting proxy has) and a localhost certificate it signed."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    return d


@pytest.fixture
def tls_workspace(company_ca):
    ws = FakeWorkspace(tls=(str(company_ca / "server.pem"), str(company_ca / "server.pem")))
    ws.start()
    try:
        yield ws
    finally:
        ws.stop()


@pytest.fixture
def tls_logged_in(tls_workspace, home, company_ca):
    r = run_databricks("auth", "login", "--host", tls_workspace.url, "--profile", "corp",
                       env={"SSL_CERT_FILE": str(company_ca / "ca.pem")})
    assert r.returncode == 0, r.stderr
    return "corp"


def test_requests_ca_bundle_is_honoured_like_the_databricks_sdk(home, tls_workspace, tls_logged_in, company_ca):
    # the CLI (Go) trusts the company CA through the system store: SSL_CERT_FILE stands for it here
    cli_trust = {"SSL_CERT_FILE": str(company_ca / "ca.pem")}
    proc = run_fmapi("models", "--profile", tls_logged_in, env=cli_trust)
    assert proc.returncode == 0, proc.stderr
    bundle_only = {"REQUESTS_CA_BUNDLE": str(company_ca / "ca.pem")}
    untrusted = run_fmapi("models", "--profile", tls_logged_in, "--verbose")
    assert untrusted.returncode == 1
    assert "certificate is not trusted" in untrusted.stderr and "REQUESTS_CA_BUNDLE" in untrusted.stderr
    assert "-> tls:" in untrusted.stderr
    proc = run_fmapi("models", "--profile", tls_logged_in, env=bundle_only)
    assert proc.returncode == 0, proc.stderr
    assert "databricks-claude-opus-4-6" in proc.stdout
    bad = run_fmapi("models", "--profile", tls_logged_in, env={"REQUESTS_CA_BUNDLE": str(home / "missing.pem")})
    assert bad.returncode == 1 and "REQUESTS_CA_BUNDLE" in bad.stderr


def test_man_page_has_examples_exit_status_files_and_environment():
    page = (ROOT / "man" / "fmapi.1").read_text()
    for heading in ("EXAMPLES", "EXIT STATUS", "FILES", "ENVIRONMENT"):
        assert ".SH %s\n" % heading in page
    environment = page.split(".SH ENVIRONMENT", 1)[1]
    for name in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME", "DATABRICKS_CONFIG_FILE", "SHIV_ROOT",
                 "NO_COLOR", "REQUESTS_CA_BUNDLE"):
        assert name in environment
    # generated from the parser: the same sections come out of build_parser()
    assert [s["heading"] for s in fmapi.build_parser()._manpage] == ["EXAMPLES", "EXIT STATUS", "FILES", "ENVIRONMENT"]


# --- fmapi status -----------------------------------------------------------------------

STATUS_KEYS = {"agent", "title", "dir", "settings", "host", "profile", "credential", "lifetime_days", "models",
               "helper", "token", "session", "can_serve", "problems"}


def test_status_one_block_per_install_and_its_json(home, workspace, logged_in, stubs):
    setup(workspace, logged_in)
    setup(workspace, logged_in, "--agent", "codex", "--model", "databricks-gpt-5-2-codex")
    proc = run_fmapi("status")
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["Claude Code: ~/.claude/settings.json", "OpenAI Codex: ~/.codex/config.toml"]
    assert "profile %s" % logged_in in blocks[0] and "PAT, 1-day lifetime" in blocks[0]
    assert "model=databricks-gpt-5-2-codex" in blocks[1] and "left)" in blocks[1]
    data = json.loads(run_fmapi("status", "--json").stdout)
    assert set(data) == {"version", "ok", "installs"} and data["version"] == 1 and data["ok"] is True
    for row in data["installs"]:
        assert set(row) == STATUS_KEYS
        assert set(row["token"]) == {"cached", "expires", "expires_at", "seconds_left", "usable"}
        assert set(row["session"]) == {"checked", "valid", "detail"}
        assert row["can_serve"] is True and row["problems"] == []
    assert data["installs"][0]["models"]["haiku"] == "databricks-claude-haiku-4-5"
    text = json.dumps(data)
    for secret in pat_values(workspace) + oauth_tokens(workspace):
        assert secret not in text and secret not in proc.stdout
    checked = json.loads(run_fmapi("status", "--check", "--json").stdout)
    assert checked["installs"][0]["session"] == {"checked": True, "valid": True, "detail": "valid"}


def test_status_exit_1_and_what_to_run_when_an_install_cannot_serve(home, workspace, logged_in, stubs):
    from conftest import expire_cached_pat, expire_cli_session

    setup(workspace, logged_in)
    d = home / ".claude"
    (d / "fmapi-key-helper.sh").unlink()
    proc = run_fmapi("status")
    assert proc.returncode == 1
    assert "problem:" in proc.stdout and "Run: fmapi setup" in proc.stdout
    setup(workspace, logged_in)
    assert run_fmapi("status").returncode == 0
    expire_cached_pat(workspace, d)
    expire_cli_session(home, workspace)
    assert run_fmapi("status").returncode == 0  # a local look cannot tell the session is dead
    proc = run_fmapi("status", "--check")
    assert proc.returncode == 1
    assert "databricks auth login --host %s --profile %s" % (workspace.url, logged_in) in proc.stdout
    data = json.loads(run_fmapi("status", "--check", "--json").stdout)
    assert data["ok"] is False and data["installs"][0]["can_serve"] is False
    assert data["installs"][0]["token"]["usable"] is False


# --- fmapi doctor -----------------------------------------------------------------------

CHECK_KEYS = {"status", "check", "agent", "install", "message", "fix"}


def doctor(*args, env=None):
    proc = run_fmapi("doctor", "--json", *args, env=env)
    data = json.loads(proc.stdout)
    assert set(data) == {"version", "ok", "counts", "checks"}
    for check in data["checks"]:
        assert set(check) == CHECK_KEYS and check["status"] in ("PASS", "WARN", "FAIL", "SKIP")
        assert (check["fix"] is not None) == (check["status"] in ("WARN", "FAIL"))
    assert data["ok"] == (proc.returncode == 0) == (data["counts"]["FAIL"] == 0)
    return proc, data


def statuses(data, check, agent=None):
    return [c["status"] for c in data["checks"] if c["check"] == check and (agent is None or c["agent"] == agent)]


def failing(data, check):
    return [c for c in data["checks"] if c["check"] == check and c["status"] == "FAIL"]


def test_doctor_all_green_then_each_check_failing(home, workspace, logged_in, stubs, tmp_path):
    setup(workspace, logged_in)
    setup(workspace, logged_in, "--agent", "codex")
    proc, data = doctor()
    assert proc.returncode == 0, proc.stdout
    for check in ("python", "environment", "network", "agent", "config", "layers", "modes", "helper", "profile",
                  "session", "models"):
        assert "PASS" in statuses(data, check), check
    text = run_fmapi("doctor")
    assert text.returncode == 0 and "PASS  helper" in text.stdout and "0 failed" in text.stdout

    # a stray credential in the environment
    proc, data = doctor(env={"ANTHROPIC_API_KEY": "sk-stray"})
    assert proc.returncode == 1 and "ANTHROPIC_API_KEY" in failing(data, "environment")[0]["message"]
    assert failing(data, "environment")[0]["fix"].startswith("unset ANTHROPIC_API_KEY")
    assert "sk-stray" not in proc.stdout

    # a project settings layer that beats fmapi's keys
    project = Path(os.getcwd()) / ".claude"
    project.mkdir()
    (project / "settings.json").write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": "https://api.anthropic.com"}}))
    proc, data = doctor()
    assert "ANTHROPIC_BASE_URL" in failing(data, "layers")[0]["message"]
    (project / "settings.json").unlink()

    # a config that lost fmapi's keys
    settings = home / ".claude" / "settings.json"
    saved = settings.read_text()
    changed = json.loads(saved)
    changed["apiKeyHelper"] = "echo hello"
    settings.write_text(json.dumps(changed))
    proc, data = doctor("--agent", "claude")
    assert "apiKeyHelper" in failing(data, "config")[0]["message"]
    assert all(c["agent"] in (None, "claude") for c in data["checks"])
    settings.write_text("{not json")
    proc, data = doctor("--agent", "claude")
    assert "not valid JSON" in failing(data, "config")[0]["message"]
    settings.write_text(saved)

    # a broken helper, a loose mode
    helper = home / ".codex" / "fmapi-key-helper.sh"
    good = helper.read_text()
    helper.write_text("#!/bin/sh\necho 'fmapi: broken' >&2\nexit 3\n")
    proc, data = doctor("--agent", "codex")
    assert "broken" in failing(data, "helper")[0]["message"]
    helper.write_text(good)
    helper.chmod(0o755)
    (home / ".codex" / ".fmapi-pat-cache").chmod(0o644)
    proc, data = doctor("--agent", "codex")
    assert "0755" in [c for c in data["checks"] if c["check"] == "helper"][0]["message"]
    assert failing(data, "modes")[0]["fix"].startswith("chmod 600")
    helper.chmod(0o700)
    (home / ".codex" / ".fmapi-pat-cache").chmod(0o600)


def test_doctor_unknown_and_not_ready_models(home, workspace, logged_in, stubs):
    workspace.serving_endpoints.append(make_endpoint("databricks-claude-haiku-5", ready=False, config_update="IN_PROGRESS"))
    workspace.check_models = False
    setup(workspace, logged_in, "--sonnet", "databricks-claude-sonet-4-6", "--haiku", "databricks-claude-haiku-5",
          "--opus", "databricks-gpt-5-2", "--skip-model-check")
    proc, data = doctor()
    assert proc.returncode == 1
    fails = {c["message"].split()[2]: c for c in failing(data, "models")}
    assert "not a serving endpoint" in fails["databricks-claude-sonet-4-6"]["message"]
    assert "databricks-claude-sonnet-4-6" in fails["databricks-claude-sonet-4-6"]["fix"]
    assert "--sonnet" in fails["databricks-claude-sonet-4-6"]["fix"]
    assert "NOT_READY (IN_PROGRESS)" in fails["databricks-claude-haiku-5"]["message"]
    assert "does not serve Claude Code's API" in fails["databricks-gpt-5-2"]["message"]
    assert "PASS" in statuses(data, "models")  # the main model is fine


def test_doctor_dead_session_and_unreachable_workspace(home, workspace, logged_in, stubs):
    from conftest import expire_cli_session

    setup(workspace, logged_in)
    expire_cli_session(home, workspace)
    proc, data = doctor()
    assert proc.returncode == 1
    assert failing(data, "session")[0]["fix"] == ("run: databricks auth login --host %s --profile %s (or fmapi reauth, for every install)"
                                                  % (workspace.url, logged_in))
    assert statuses(data, "models") == ["SKIP"]
    workspace.stop()
    proc, data = doctor()
    assert failing(data, "connect") and "connecting to 127.0.0.1" in failing(data, "connect")[0]["message"]


def test_doctor_without_installs_checks_the_system(home):
    proc, data = doctor()
    assert proc.returncode == 0 and statuses(data, "installs") == ["SKIP"]


NO_CA = {"SSL_CERT_FILE": None, "REQUESTS_CA_BUNDLE": None, "NODE_EXTRA_CA_CERTS": None, "CODEX_CA_CERTIFICATE": None}


def test_doctor_names_what_each_agent_needs_for_an_untrusted_certificate(home, tls_workspace, tls_logged_in,
                                                                          company_ca, stubs):
    ca = str(company_ca / "ca.pem")
    for agent in ("claude", "codex"):
        proc = run_fmapi("setup", "--yes", "--agent", agent, "--host", tls_workspace.url, "--profile", tls_logged_in,
                         env=dict(NO_CA, REQUESTS_CA_BUNDLE=ca))
        assert proc.returncode == 0, proc.stderr
    proc, data = doctor(env=NO_CA)
    assert proc.returncode == 1
    tls = failing(data, "tls")
    assert "not trusted" in tls[0]["message"] and "REQUESTS_CA_BUNDLE" in tls[0]["fix"]
    fixes = {c["agent"]: c["fix"] for c in tls[1:]}
    assert fixes == {"claude": "export NODE_EXTRA_CA_CERTS=/path/to/company-ca.pem",
                     "codex": "export CODEX_CA_CERTIFICATE=/path/to/company-ca.pem"}
    proc, data = doctor(env=dict(NO_CA, REQUESTS_CA_BUNDLE=ca))
    assert [c["agent"] for c in failing(data, "tls")] == ["claude", "codex"]
    assert "PASS" in statuses(data, "network") and "PASS" in statuses(data, "models", "claude")
    proc, data = doctor(env=dict(NO_CA, REQUESTS_CA_BUNDLE=ca, NODE_EXTRA_CA_CERTS=ca, CODEX_CA_CERTIFICATE=ca))
    assert failing(data, "tls") == [] and statuses(data, "tls") == ["PASS", "PASS"]
    assert proc.returncode == 0, proc.stdout


# --- models at setup --------------------------------------------------------------------


def test_a_model_the_workspace_does_not_serve_is_caught_before_anything_is_written(home, workspace, logged_in, stubs):
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, "--model", "databricks-claude-opus-9")
    assert proc.returncode == 2
    assert "Model: the workspace has no serving endpoint 'databricks-claude-opus-9'" in proc.stderr
    assert "the nearest: databricks-claude-opus-4-6" in proc.stderr and "--skip-model-check" in proc.stderr
    assert not (home / ".claude").exists() and not pat_values(workspace)
    assert not (home / ".local" / "share" / "fmapi" / "installs.json").exists()
    # a real endpoint of the wrong family
    proc = run_fmapi("setup", "--yes", "--agent", "codex", "--host", workspace.url, "--profile", logged_in,
                     "--model", "databricks-claude-opus-4-6")
    assert proc.returncode == 2 and "does not serve OpenAI Codex's API" in proc.stderr
    assert "databricks-gpt-5-2" in proc.stderr
    assert not (home / ".codex").exists() and not pat_values(workspace)
    # the user insists
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, "--model", "databricks-claude-opus-9",
                     "--skip-model-check")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((home / ".claude" / "settings.json").read_text())["env"]["ANTHROPIC_MODEL"] == "databricks-claude-opus-9"


def test_when_the_list_cannot_be_fetched_setup_warns_and_goes_on(home, workspace, logged_in, stubs):
    workspace.fail_next("GET", "/api/2.0/serving-endpoints", 403)
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, "--model", "databricks-claude-opus-9")
    assert proc.returncode == 0, proc.stderr
    assert "could not list the workspace's serving endpoints" in proc.stderr


def test_on_a_terminal_a_bad_model_flag_is_asked_again_with_the_closest_first(home, workspace, logged_in, stubs):
    from test_claude import ENTER, OTHER, Terminal

    term = Terminal(["--host", workspace.url, "--profile", logged_in, "--auth", "pat", "--sonnet", "databricks-claude-sonet-4-6",
                     "--model", "databricks-claude-opus-4-6", "--opus", "databricks-claude-opus-4-6",
                     "--haiku", "databricks-claude-haiku-4-5", "--settings-location", "home", "--pat-lifetime", "1"],
                    cwd=os.getcwd())
    term.expect("Sonnet model: the workspace has no serving endpoint 'databricks-claude-sonet-4-6'")
    term.expect("Sonnet model:")
    menu = term.expect(OTHER)
    first = [line for line in menu.splitlines() if "databricks-" in line][0]
    assert "> databricks-claude-sonnet-4-6" in first  # the nearest, first and chosen
    term.send(ENTER)
    assert term.finish() == 0, term.buffer
    env = json.loads((home / ".claude" / "settings.json").read_text())["env"]
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "databricks-claude-sonnet-4-6"


def test_on_a_terminal_without_the_list_the_questions_take_free_text(home, workspace, logged_in, stubs):
    from test_claude import Terminal

    workspace.fail_next("GET", "/api/2.0/serving-endpoints", 403, times=2)  # permanent: not retried
    term = Terminal(["--agent", "codex", "--host", workspace.url, "--profile", logged_in, "--auth", "pat", "--pat-lifetime", "1"],
                    cwd=os.getcwd())
    term.expect("could not list the workspace's models")
    term.expect("[databricks-gpt-5-2]")
    term.send("databricks-gpt-5-2-codex\r")
    assert term.finish() == 0, term.buffer
    assert 'model = "databricks-gpt-5-2-codex"' in (home / ".codex" / "config.toml").read_text()


# --- doctor's pieces, in-process ------------------------------------------------------------


def test_managed_settings_beat_the_install(home, tmp_path, monkeypatch):
    managed = tmp_path / "managed-settings.json"
    managed.write_text(json.dumps({"apiKeyHelper": "/opt/corp/key.sh", "env": {"ANTHROPIC_MODEL": "corp-model"}}))
    monkeypatch.setattr(fmapi, "CLAUDE_MANAGED_SETTINGS", (str(managed),))
    record = {"agent": "claude", "dir": str(home / ".claude"), "settings": str(home / ".claude" / "settings.json")}
    assert fmapi.settings_layers(record) == [(str(managed), "apiKeyHelper", "/opt/corp/key.sh", True),
                                             (str(managed), "env.ANTHROPIC_MODEL", "corp-model", False)]
    doc = fmapi.Doctor(quiet=True)
    monkeypatch.setattr(fmapi.AGENTS["claude"], "verify", lambda record: [])
    fmapi.doctor_config(doc, record)
    layers = {c["message"].split(" sets ")[1].split()[0]: c["status"] for c in doc.checks if c["check"] == "layers"}
    assert layers == {"apiKeyHelper": "FAIL", "env.ANTHROPIC_MODEL": "WARN"}


def test_the_probe_names_dns_failures_and_timeouts(monkeypatch):
    import socket
    import threading
    import time as clock

    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)  # DNS cannot run here: no resolver
    stage, words = fmapi._probe("https://my-workspace.cloud.databricks.com")
    assert stage == "dns" and "DNS lookup of my-workspace.cloud.databricks.com failed" in words

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: clock.sleep(2))
    stage, words = fmapi._probe("https://slow.example.com", stage_timeout=0.2)
    assert stage == "dns" and "timed out after 0.2 s" in words
    monkeypatch.undo()

    # a server that accepts the connection and never speaks TLS: the handshake times out
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    try:
        stage, words = fmapi._probe("https://127.0.0.1:%d" % listener.getsockname()[1], stage_timeout=0.3)
    finally:
        listener.close()
    assert stage == "tls" and "TLS handshake with 127.0.0.1 timed out after 0.3 s" in words


def test_gemini_and_codex_project_layers(home, tmp_path, monkeypatch):
    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    (project / ".gemini").mkdir()
    (project / ".codex").mkdir()
    (project / ".gemini" / "settings.json").write_text(json.dumps({"security": {"auth": {"selectedType": "oauth-personal"}}}))
    (project / ".env").write_text("export GEMINI_API_KEY=AIza-secret\n")
    (project / ".codex" / "config.toml").write_text('model = "gpt-5.5"\n')
    monkeypatch.chdir(project)
    gemini = {"agent": "gemini", "dir": str(home / ".gemini"), "settings": str(home / ".gemini" / "settings.json")}
    codex = {"agent": "codex", "dir": str(home / ".codex")}
    layers = fmapi.settings_layers(gemini)
    assert (str(project / ".gemini" / "settings.json"), "security.auth.selectedType", "oauth-personal", True) in layers
    assert (str(project / ".env"), "GEMINI_API_KEY", None, False) in layers
    assert fmapi.settings_layers(codex) == [(str(project / ".codex" / "config.toml"), "model", "gpt-5.5", False)]
    doc = fmapi.Doctor(quiet=True)
    monkeypatch.setattr(fmapi.AGENTS["gemini"], "verify", lambda record: [])
    fmapi.doctor_config(doc, gemini)
    assert "AIza-secret" not in json.dumps(doc.checks)
    assert [c["status"] for c in doc.checks if c["check"] == "layers"] == ["FAIL", "WARN"]


# --- a PAT revoked in the workspace (new-user finding) ------------------------------------


def test_a_pat_revoked_in_the_workspace_fails_doctor_status_check_and_is_replaced_by_reauth(home, workspace, logged_in, stubs):
    setup(workspace, logged_in, "--agent", "codex")
    cache = home / ".codex" / fmapi.CACHE_NAME
    dead = json.loads(cache.read_text())["token"]
    workspace.revoke_pat(dead)

    proc, data = doctor()
    assert proc.returncode == 1
    [fail] = failing(data, "token")
    assert "no longer valid" in fail["message"] and fail["fix"] == "Run: fmapi setup --agent codex --yes"
    assert run_fmapi("status").returncode == 0  # a local look cannot tell
    checked = run_fmapi("status", "--check")
    assert checked.returncode == 1 and "cached PAT is no longer valid" in checked.stdout
    assert "fmapi setup --agent codex --yes" in checked.stdout

    proc = run_fmapi("reauth")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK, serves a PAT" in proc.stdout  # replaced by reauth, or by the helper it runs
    new = json.loads(cache.read_text())["token"]
    assert new != dead and new in pat_values(workspace)
    assert doctor()[0].returncode == 0
    assert run_fmapi("status", "--check").returncode == 0


def test_reauth_replaces_a_dead_pat_the_helper_hands_out(home, workspace, logged_in, stubs):
    setup(workspace, logged_in, "--agent", "codex")
    cache = home / ".codex" / fmapi.CACHE_NAME
    dead = json.loads(cache.read_text())["token"]
    workspace.revoke_pat(dead)
    proc = run_fmapi("reauth")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK, serves a PAT" in proc.stdout
    assert json.loads(cache.read_text())["token"] in pat_values(workspace)
