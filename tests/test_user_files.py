"""The user's files stay theirs (issue 12): byte-order marks and line endings, values the user set
before fmapi, files fmapi cannot write, sudo, installs under an env-chosen config dir, and project
installs in a git work tree. Each test is one input from the issue, run as a user runs fmapi."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FMAPI, _env, make_stub, read_json, run_fmapi
from test_claude import CLAUDE_STUB
from test_codex import CODEX_STUB
from test_copilot import STUB as COPILOT_STUB
from test_gemini import gemini_stub

BOM = b"\xef\xbb\xbf"


@pytest.fixture
def stubs(home_bin, tmp_path):
    make_stub(home_bin, "claude", CLAUDE_STUB)
    make_stub(home_bin, "codex", CODEX_STUB % "0.169.0")
    gemini_stub(home_bin, tmp_path / "gemini-run.json")
    make_stub(home_bin, "pi", "#!/bin/sh\necho '1.6.0'\n")
    make_stub(home_bin, "copilot", COPILOT_STUB % "1.0.102")


@pytest.fixture
def setup(workspace, logged_in, stubs):
    """`fmapi setup --yes` against the fake workspace; extra arguments follow."""
    def run(*extra, check=True, env=None):
        proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, *extra, env=env)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def pats(workspace):
    return [p for p in workspace.pats_with_comment_prefix("")]


def helper_named_in(settings_path):
    return read_json(settings_path)["apiKeyHelper"].strip("'")


# ------------------------------------------------------------------ byte-order marks (F1, F2, P5)
CLAUDE_BOM = BOM + b'{\r\n    "permissions": {\r\n        "allow": [\r\n            "Bash(git status)"\r\n        ]\r\n    },\r\n    "model": "opus"\r\n}\r\n'


def test_claude_settings_with_a_bom_are_read_kept_and_round_trip(home, setup):
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_bytes(CLAUDE_BOM)  # what PowerShell 5.1 / Notepad write
    proc = setup()
    assert "not valid JSON" not in proc.stderr
    assert not [p for p in os.listdir(d) if "backup" in p]
    raw = (d / "settings.json").read_bytes()
    assert raw.startswith(BOM) and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    settings = json.loads(raw[3:])
    assert settings["permissions"] == {"allow": ["Bash(git status)"]} and settings["model"] == "opus"
    assert os.path.exists(helper_named_in_bom(d / "settings.json"))
    assert run_fmapi("setup", "--yes").returncode == 0  # a re-run reads it too
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (d / "settings.json").read_bytes() == CLAUDE_BOM


def helper_named_in_bom(path):
    return json.loads(path.read_bytes()[3:])["apiKeyHelper"].strip("'")


def test_claude_state_file_with_a_bom_keeps_it(home, setup):
    state = home / ".claude.json"
    state.write_bytes(BOM + b'{"numStartups": 3}')
    setup()
    raw = state.read_bytes()
    assert raw.startswith(BOM) and json.loads(raw[3:]) == {"numStartups": 3, "hasCompletedOnboarding": True}


CODEX_BOM = BOM + b'# my settings\r\nmodel = "gpt-5.5"\r\n'


def test_codex_config_with_a_bom_is_merged_and_round_trips(home, setup):
    d = home / ".codex"
    d.mkdir()
    (d / "config.toml").write_bytes(CODEX_BOM)
    proc = setup("--agent", "codex")
    assert "not valid TOML" not in proc.stdout + proc.stderr
    raw = (d / "config.toml").read_bytes()
    assert raw.startswith(BOM) and b'model_provider = "databricks-fmapi"\r\n' in raw
    assert setup("--agent", "codex").returncode == 0  # the re-run the README advises
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (d / "config.toml").read_bytes() == CODEX_BOM


def test_gemini_settings_with_a_bom_are_refused_naming_the_bom(home, workspace, setup):
    d = home / ".gemini"
    d.mkdir()
    data = BOM + b'{"ui": {"theme": "GitHub"}}\n'
    (d / "settings.json").write_bytes(data)
    proc = setup("--agent", "gemini", check=False)
    assert proc.returncode == 1
    assert "byte-order mark" in proc.stderr and "Gemini CLI cannot read" in proc.stderr
    assert "comments" not in proc.stderr
    assert (d / "settings.json").read_bytes() == data
    assert not workspace.pats_with_comment_prefix("Gemini")  # nothing minted


def test_gemini_env_file_with_a_bom_round_trips(home, setup):
    d = home / ".gemini"
    d.mkdir()
    original = BOM + b"MY_TOOL_TOKEN=abc\r\n"
    (d / ".env").write_bytes(original)
    setup("--agent", "gemini", "--write-env")
    raw = (d / ".env").read_bytes()
    assert raw.startswith(original) and b"GEMINI_API_KEY=" in raw
    assert run_fmapi("uninstall", "--yes").returncode == 0
    assert (d / ".env").read_bytes() == original


# ------------------------------------------------------------------ uninstall keeps a helper still in use
def test_uninstall_keeps_codex_helper_while_the_config_names_it(home, setup):
    setup("--agent", "codex")
    d = home / ".codex"
    config = d / "config.toml"
    broken = config.read_bytes() + b"oops = \n"
    config.write_bytes(broken)
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 1
    assert config.read_bytes() == broken
    assert (d / "fmapi-key-helper.sh").exists() and "fmapi-key-helper.sh" in proc.stdout
    assert run_fmapi("token", "--agent", "codex").returncode == 0  # codex still gets a token
    config.write_bytes(broken.replace(b"oops = \n", b""))
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout
    assert not (d / "fmapi-key-helper.sh").exists() and not config.exists()


@pytest.fixture
def read_only():
    """read_only(path) -> argv prefix under which ``path`` is a read-only mount (root: a bind mount in a
    private mount namespace, as a Nix store is); not root: the directory is chmod'ed 0555."""
    restore = []

    def make(path):
        if os.geteuid() != 0:
            restore.append((path, path.stat().st_mode))
            path.chmod(0o555)
            return []
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("cannot make a private mount namespace here (unshare -m)")
        return ["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" '
                '&& shift && exec "$@"', "sh", str(path)]

    yield make
    for path, mode in restore:
        path.chmod(mode)


def run_fmapi_under(prefix, *args, env=None):
    return subprocess.run(prefix + [sys.executable, str(FMAPI), *[str(a) for a in args]], stdin=subprocess.DEVNULL,
                          env=_env(env), capture_output=True, text=True, timeout=120)


def store_link(home, tmp_path, relative, data):
    """``home/relative`` as a link into a 'store' directory holding ``data`` (home-manager's layout)."""
    store = tmp_path / "nix" / "store" / "abc123-home-manager-files"
    store.mkdir(parents=True, exist_ok=True)
    target = store / Path(relative).name
    target.write_bytes(data)
    link = home / relative
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link, target, store


# ------------------------------------------------------------------ files fmapi cannot write (F6)
@pytest.mark.parametrize("agent,relative,data", [
    ("claude", ".claude/settings.json", b'{"permissions":{"allow":["Bash(ls)"]}}'),
    ("codex", ".codex/config.toml", b'model = "gpt-5.5"\n'),
])
def test_read_only_store_link_is_refused_before_minting(home, tmp_path, workspace, logged_in, stubs, read_only,
                                                       agent, relative, data):
    link, target, store = store_link(home, tmp_path, relative, data)
    proc = run_fmapi_under(read_only(store), "setup", "--agent", agent, "--yes", "--host", workspace.url,
                           "--profile", logged_in)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    first = proc.stderr.splitlines()[0]
    assert "~/%s links to %s" % (relative, target) in first and "read-only" in first, proc.stderr
    assert "minted no token" in first and ".fmapi-tmp" not in proc.stderr and "HOME read-only" not in proc.stderr
    assert ("--settings-location" if agent == "claude" else "CODEX_HOME") in proc.stderr
    assert "[3/5]" not in proc.stdout and not workspace.pats_with_comment_prefix("")  # nothing minted
    assert not (link.parent / "fmapi-key-helper.sh").exists() and target.read_bytes() == data
    assert not (home / ".local" / "share" / "fmapi").exists()


def test_a_read_only_directory_is_refused_before_minting(home, workspace, setup, read_only):
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_text("{}\n")
    proc = run_fmapi_under(read_only(d), "setup", "--yes", "--host", workspace.url, "--profile", "fake-profile")
    assert proc.returncode == 1 and "minted no token" in proc.stderr, proc.stdout + proc.stderr
    assert "~/.claude/settings.json" in proc.stderr and not workspace.pats_with_comment_prefix("")


@pytest.mark.parametrize("agent,relative", [("claude", ".claude/settings.json"), ("codex", ".codex/config.toml"),
                                            ("gemini", ".gemini/settings.json")])
def test_uninstall_never_deletes_a_helper_a_read_only_config_still_names(home, tmp_path, setup, read_only,
                                                                        agent, relative):
    setup("--agent", agent)
    path = home / relative
    store = tmp_path / "ro-store"
    store.mkdir()
    target = store / path.name
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)  # the user moved the file into a read-only store after setup
    helper = path.parent / "fmapi-key-helper.sh"
    proc = run_fmapi_under(read_only(store), "uninstall", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "by hand" in proc.stdout
    if agent == "gemini":  # no helper: the launcher's cache goes, the file says what to remove
        assert "model.name" in proc.stdout and target.read_bytes() == path.read_bytes()
        return
    assert helper.exists() and "kept %s" % ("~/" + str(helper.relative_to(home))) in proc.stdout, proc.stdout
    assert run_fmapi("token", "--agent", agent).returncode == 0  # the agent still gets its token
    assert "fmapi-key-helper.sh" in target.read_text()


def test_a_file_owned_by_someone_else_is_refused(home, setup):
    if os.geteuid() == 0:  # root on a foreign HOME is refused earlier; here: a foreign file in root's HOME
        d = home / ".claude"
        d.mkdir()
        (d / "settings.json").write_text("{}\n")
        os.chown(d / "settings.json", 65534, 65534)
        proc = setup(check=False)
        assert proc.returncode == 1 and "belongs to" in proc.stderr and "minted no token" in proc.stderr, proc.stderr


# ------------------------------------------------------------------ root on another user's HOME (F8)
def test_root_on_another_users_home_stops_before_writing(home, workspace, logged_in, stubs):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_text('{"theme": "dark"}\n')
    (home / ".claude.json").write_text("{}\n")
    for path in (home, d, d / "settings.json", home / ".claude.json"):
        os.chown(path, 65534, 65534)
    before = {p: (p.stat().st_uid, p.read_bytes() if p.is_file() else None) for p in home.rglob("*")}
    for args in (["setup", "--yes", "--host", workspace.url, "--profile", logged_in],
                 ["setup", "--agent", "codex", "--yes", "--host", workspace.url, "--profile", logged_in]):
        proc = run_fmapi(*args, env={"SUDO_USER": "nobody"})
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "running as root" in proc.stderr and "without sudo" in proc.stderr
        assert "[1/5]" not in proc.stdout
    after = {p: (p.stat().st_uid, p.read_bytes() if p.is_file() else None) for p in home.rglob("*")}
    assert after == before and not workspace.pats_with_comment_prefix("")


# ------------------------------------------------------------------ values the user set before fmapi (F7)
USER_CLAUDE = {
    "env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: data-eng\nX-Cost-Center: 1234",
            "ANTHROPIC_MODEL": "claude-opus-4-1", "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": "900000",
            "ANTHROPIC_API_KEY": "sk-ant-mine", "MY_VAR": "1"},
    "apiKeyHelper": "~/bin/my-key",
    "permissions": {"allow": ["Bash(ls)"]},
}


def test_claude_keeps_merges_and_restores_the_users_values(home, setup):
    d = home / ".claude"
    d.mkdir()
    original = json.dumps(USER_CLAUDE, indent=2).encode() + b"\n"
    (d / "settings.json").write_bytes(original)
    proc = setup()
    env = read_json(d / "settings.json")["env"]
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == ("X-Team: data-eng\nX-Cost-Center: 1234\n"
                                               "x-databricks-use-coding-agent-mode: true")
    assert env["ANTHROPIC_MODEL"].startswith("databricks-") and "ANTHROPIC_API_KEY" not in env and env["MY_VAR"] == "1"
    out = proc.stdout
    assert "kept your ANTHROPIC_CUSTOM_HEADERS" in out
    for name in ("env.ANTHROPIC_MODEL = \"claude-opus-4-1\"", "env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS", "apiKeyHelper",
                 "env.ANTHROPIC_API_KEY (removed"):
        assert name in out, out
    assert "sk-ant-mine" not in out + proc.stderr  # a credential's value is never shown
    again = setup()  # a re-run neither repeats the notice nor forgets the user's values
    assert "replaced your own values" not in again.stdout
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout
    assert (d / "settings.json").read_bytes() == json.dumps(
        dict(USER_CLAUDE, env={k: v for k, v in USER_CLAUDE["env"].items() if k != "ANTHROPIC_API_KEY"}
             | {"ANTHROPIC_API_KEY": "sk-ant-mine"}), indent=2).encode() + b"\n"


def test_uninstall_of_a_merged_header_removes_only_fmapis_line(home, setup):
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_text(json.dumps({"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: data-eng"}}))
    setup()
    settings = read_json(d / "settings.json")
    settings["env"]["ANTHROPIC_CUSTOM_HEADERS"] += "\nX-Added-Later: 1"  # the user edits the lines after setup
    (d / "settings.json").write_text(json.dumps(settings))
    assert run_fmapi("uninstall", "--yes").returncode == 0
    assert read_json(d / "settings.json") == {"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: data-eng\nX-Added-Later: 1"}}


def test_fmapi_gemini_joins_the_users_headers_with_fmapis(home, setup, tmp_path):
    setup("--agent", "gemini")
    record = tmp_path / "gemini-run.json"
    proc = run_fmapi("gemini", "-p", "hi", env={"GEMINI_CLI_CUSTOM_HEADERS": "X-My-Company-Header: abc123, X-Two: 2"})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(record.read_text())["env"]["GEMINI_CLI_CUSTOM_HEADERS"]
    assert seen == "X-My-Company-Header: abc123, X-Two: 2, x-databricks-use-coding-agent-mode: true"
    proc = run_fmapi("gemini", "-p", "hi")
    assert json.loads(record.read_text())["env"]["GEMINI_CLI_CUSTOM_HEADERS"] == "x-databricks-use-coding-agent-mode: true"


# ------------------------------------------------------------------ a re-run keeps the model the user chose (F12)
def test_claude_rerun_keeps_the_model_the_user_set_since(home, setup):
    setup("--model", "databricks-claude-opus-4-6")
    path = home / ".claude" / "settings.json"
    settings = read_json(path)
    settings["env"]["ANTHROPIC_MODEL"] = "databricks-claude-sonnet-4-6"
    path.write_text(json.dumps(settings, indent=2))
    proc = setup()  # the README's fix for a revoked PAT
    assert read_json(path)["env"]["ANTHROPIC_MODEL"] == "databricks-claude-sonnet-4-6"
    assert "kept the model you set" in proc.stdout and "databricks-claude-sonnet-4-6" in proc.stdout
    setup("--model", "databricks-claude-sonnet-4-5")  # --model still wins
    assert read_json(path)["env"]["ANTHROPIC_MODEL"] == "databricks-claude-sonnet-4-5"
    assert run_fmapi("uninstall", "--yes").returncode == 0 and not path.exists()


def test_codex_rerun_keeps_the_model_the_user_set_since(home, setup):
    d = home / ".codex"
    d.mkdir()
    (d / "config.toml").write_text('model = "gpt-5.5"\n')
    setup("--agent", "codex", "--model", "databricks-gpt-5-2")
    config = d / "config.toml"
    config.write_text(config.read_text().replace('model = "databricks-gpt-5-2"', 'model = "databricks-gpt-5-2-codex"'))
    proc = setup("--agent", "codex")
    assert 'model = "databricks-gpt-5-2-codex"' in config.read_text()
    assert "kept the model you set" in proc.stdout
    assert run_fmapi("uninstall", "--yes").returncode == 0
    assert config.read_text() == 'model = "gpt-5.5"\n'  # the model from before fmapi comes back


# ------------------------------------------------------------------ installs under an env-chosen config dir (F9)
@pytest.mark.parametrize("agent,variable,sub", [("claude", "CLAUDE_CONFIG_DIR", ""), ("codex", "CODEX_HOME", ""),
                                                ("gemini", "GEMINI_CLI_HOME", ".gemini"),
                                                ("pi", "PI_CODING_AGENT_DIR", ""), ("copilot", "COPILOT_HOME", "")])
def test_an_install_made_with_the_config_dir_variable_is_found_without_it(home, workspace, setup, agent, variable, sub):
    chosen = home / "work-profile"
    setup("--agent", agent, env={variable: str(chosen)})
    directory = chosen / sub if sub else chosen
    token = run_fmapi("token", "--agent", agent)  # a plain shell
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip() == json.loads((directory / ".fmapi-pat-cache").read_text())["token"]
    proc = run_fmapi("setup", "--agent", agent, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kept a PAT" in proc.stdout
    default = {"claude": home / ".claude", "codex": home / ".codex", "gemini": home / ".gemini",
               "pi": home / ".pi", "copilot": home / ".copilot"}[agent]
    assert not default.exists()
    assert len(workspace.pats_with_comment_prefix("")) == 1
    if agent in ("copilot", "gemini"):  # the launcher starts the agent on that install's home
        launched = run_fmapi(agent, "-p", "hi")
        assert launched.returncode == 0, launched.stderr
        if agent == "copilot":
            assert "COPILOT_HOME=%s\n" % chosen in launched.stdout, launched.stdout
    status = run_fmapi("status")
    installs = [line for line in status.stdout.splitlines() if line and not line.startswith(" ")]
    assert len(installs) == 1 and str(directory.relative_to(home)) in installs[0], status.stdout
    assert run_fmapi("uninstall", "--yes").returncode == 0
    assert not (directory / ".fmapi-pat-cache").exists() and not (home / ".local" / "share" / "fmapi").exists()


def test_claude_config_dir_install_marks_onboarding_in_that_dir(home, setup):
    chosen = home / ".claude-work"
    setup(env={"CLAUDE_CONFIG_DIR": str(chosen)})
    assert read_json(chosen / ".claude.json") == {"hasCompletedOnboarding": True}
    proc = run_fmapi("setup", "--yes")
    assert proc.returncode == 0 and "CLAUDE_CONFIG_DIR" in proc.stdout
    assert not (home / ".claude.json").exists() and not (home / ".claude").exists()


# ------------------------------------------------------------------ project installs in a git work tree
def git(project, *args):
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=project,
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def project(tmp_path):
    """A git project with a committed team .claude/settings.json."""
    p = tmp_path / "proj"
    (p / ".claude").mkdir(parents=True)
    (p / ".claude" / "settings.json").write_text('{"permissions": {"allow": ["Bash(make)"]}}\n')
    (p / "README").write_text("hi\n")
    git(p, "init", "-q")
    git(p, "add", "-A")
    git(p, "commit", "-qm", "init")
    return p


@pytest.mark.parametrize("how", ["path", "cwd", "subdir"])
def test_project_install_in_a_git_work_tree_leaves_git_status_clean(home, setup, project, monkeypatch, how):
    exclude = project / ".git" / "info" / "exclude"
    before = exclude.read_bytes()
    base = project / "pkg" if how == "subdir" else project
    base.mkdir(exist_ok=True)
    if how == "cwd":
        monkeypatch.chdir(base)
    proc = setup("--settings-location", "cwd" if how == "cwd" else str(base))
    d = base / ".claude"
    local = read_json(d / "settings.local.json")
    assert local["apiKeyHelper"].strip("'") == str(d / "fmapi-key-helper.sh")
    assert "ANTHROPIC_BASE_URL" in local["env"]
    if how != "subdir":
        assert (d / "settings.json").read_text() == '{"permissions": {"allow": ["Bash(make)"]}}\n'  # the team's
    assert not (d / ".fmapi-pat-cache").exists() and not list(project.rglob(".fmapi-pat-cache*"))
    assert git(project, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (project / ".gitignore").exists()
    assert "settings.local.json" in proc.stdout
    token = run_fmapi("token", "--settings-location", str(base))
    assert token.returncode == 0 and token.stdout.strip().startswith("dapi"), token.stderr
    helper = subprocess.run([str(d / "fmapi-key-helper.sh")], capture_output=True, text=True)
    assert helper.stdout == token.stdout
    assert setup("--settings-location", str(base)).returncode == 0  # a re-run adds nothing twice
    assert git(project, "status", "--porcelain", "--untracked-files=all") == ""
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout
    assert exclude.read_bytes() == before
    assert not (d / "settings.local.json").exists() and not (d / "fmapi-key-helper.sh").exists()
    assert git(project, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (home / ".local" / "share" / "fmapi").exists()


def test_project_install_outside_a_work_tree_is_as_before(home, setup, tmp_path):
    base = tmp_path / "plain"
    base.mkdir()
    setup("--settings-location", str(base))
    assert (base / ".claude" / "settings.json").exists() and (base / ".claude" / ".fmapi-pat-cache").exists()
    assert not (base / ".claude" / "settings.local.json").exists()


def test_a_jsonc_file_with_a_bom_is_refused_naming_the_bom(home, workspace, logged_in, home_bin):
    """Pi's models.json (read through fmapi's JSONC editor): the error names the mark as the cause."""
    make_stub(home_bin, "pi", "#!/bin/sh\necho '1.6.0'\n")
    agent_dir = home / ".pi" / "agent"
    agent_dir.mkdir(parents=True)
    data = BOM + b'{"providers": {}}\n'
    (agent_dir / "models.json").write_bytes(data)
    proc = run_fmapi("setup", "--agent", "pi", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 1 and "byte-order mark" in proc.stderr, proc.stdout + proc.stderr
    assert (agent_dir / "models.json").read_bytes() == data
    assert not workspace.requests_to("/api/2.0/token/create")


def test_a_project_install_the_registry_lost_is_cleaned_from_settings_local(home, setup, project, monkeypatch):
    monkeypatch.chdir(project)
    before = (project / ".git" / "info" / "exclude").read_bytes()
    setup("--settings-location", "cwd")
    registry = home / ".local" / "share" / "fmapi" / "installs.json"
    registry.unlink()
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stdout
    assert not (project / ".claude" / "settings.local.json").exists()
    assert not (project / ".claude" / "fmapi-key-helper.sh").exists()
    assert (project / ".git" / "info" / "exclude").read_bytes() == before
