"""OpenAI Codex through fmapi: the line-based TOML editor that changes only fmapi's part of
config.toml, and `fmapi setup --agent codex` / `fmapi token` / `fmapi --uninstall` as a user runs
them against the fake workspace with a stand-in `codex`."""

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cache_of, make_stub, run_fmapi

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fmapi  # noqa: E402


def parse_toml(text):
    """The document as Python values: tomllib (3.11+), else tomli when installed, else skip."""
    try:
        import tomllib as reader
    except ImportError:
        reader = pytest.importorskip("tomli", reason="reading TOML in the tests needs Python 3.11+ or tomli")
    return reader.loads(text)


CODEX = fmapi.AGENTS["codex"]
ID = "databricks-fmapi"
TODAY = time.strftime("%Y-%m-%d")
RECORD = {"agent": "codex", "host": "https://ws.cloud.databricks.com", "model": "databricks-gpt-5-2",
          "lifetime_days": 1, "dir": "/home/u/.codex", "profile": "p"}

# A user's config.toml with everything a line-based editor could trip over.
RICH = '''\
# My Codex configuration.
model = "gpt-5.5"   # my usual model
approval_policy = "on-request"
notice = """
[model_providers.databricks-fmapi]
model = "not a key: inside a multi-line string"
"""
literal = \'\'\'
[tui]
\'\'\'
writable_roots = [
  "/tmp", # a comment inside an array
  [ "nested", "]" ],
]
"dotted.quoted" = { a = 1, b = "}" }
released = 1979-05-27 07:32:00Z

# My own provider, keep it.
[model_providers.mine]
name = "Mine"
base_url = "https://example.com/v1"
http_headers = { "X-Team" = "a#b" }

[[mcp_servers_list]]   # an array of tables
name = "one"

[tui]
notifications = true
# last line is a comment without a newline'''


def merged(text, record=RECORD, previous=None):
    return CODEX.merge(text, record, previous)


def full_record(undo, record=RECORD):
    return dict(record, **undo)


def expected_block(record=RECORD):
    return (
        "# Databricks FMAPI, written by fmapi: re-run fmapi to change it, `fmapi --uninstall` to remove it.\n"
        "[model_providers.databricks-fmapi]\n"
        'name = "Databricks FMAPI"\n'
        'base_url = "%s/serving-endpoints"\n'
        'wire_api = "responses"\n'
        'http_headers = { "x-databricks-use-coding-agent-mode" = "true" }\n'
        "\n"
        "[model_providers.databricks-fmapi.auth]\n"
        'command = "%s/fmapi-key-helper.sh"\n'
        "timeout_ms = 30000\n"
        "refresh_interval_ms = 3600000\n" % (record["host"], record["dir"])
    )


# --- the scanner --------------------------------------------------------------------------


def test_scanner_finds_statements_not_lookalikes_inside_strings_and_arrays():
    statements = fmapi.toml_statements(RICH)
    tables = [(s["kind"], s["path"], s["start"] + 1) for s in statements if s["kind"] != "keyval"]
    assert tables == [("table", ("model_providers", "mine"), 19), ("array", ("mcp_servers_list",), 24),
                      ("table", ("tui",), 27)]
    top = {s["path"]: (s["start"] + 1, s["end"]) for s in statements if s["kind"] == "keyval" and not s["table"]}
    assert top == {("model",): (2, 2), ("approval_policy",): (3, 3), ("notice",): (4, 7), ("literal",): (8, 10),
                   ("writable_roots",): (11, 14), ("dotted.quoted",): (15, 15), ("released",): (16, 16)}
    headers = [s for s in statements if s["path"] == ("http_headers",)]
    assert headers[0]["table"] == ("model_providers", "mine")


def test_scanner_reads_quoted_and_dotted_keys_and_crlf():
    text = 'a . "b.c" . \'d\' = 1\r\n[ x . "y z" ]  # c\r\n"k\\u00e9" = \'v\'\r\n'
    statements = fmapi.toml_statements(text)
    assert [s["path"] for s in statements] == [("a", "b.c", "d"), ("x", "y z"), ("ké",)]
    assert [(s["start"], s["end"]) for s in statements] == [(0, 1), (1, 2), (2, 3)]
    assert statements[2]["table"] == ("x", "y z")


@pytest.mark.parametrize("text, line", [
    ('a = """\nnever closed\n', 1),
    ("a = [\n 1,\n 2\n", 4),
    ('a = "one line\nb = 2\n', 1),
    ("[table\nb = 1\n", 1),
    ("a = 1 b = 2\n", 1),
    ("ok = 1\n= 2\n", 2),
    ("ok = 1\nkey =\n", 2),
])
def test_scanner_refuses_what_it_cannot_follow_and_names_the_line(text, line):
    with pytest.raises(fmapi.TomlSyntaxError) as err:
        fmapi.toml_statements(text)
    assert str(err.value).startswith("line %d:" % line)


# --- merging and unmerging ----------------------------------------------------------------


def test_merge_into_a_rich_file_changes_only_fmapis_part():
    text, undo = merged(RICH)
    user_lines = RICH.split("\n")
    expected = "\n".join(
        [user_lines[0], 'model_provider = "databricks-fmapi"', 'model = "databricks-gpt-5-2"'] + user_lines[2:]
    ) + "\n\n" + expected_block()
    assert text == expected
    data = parse_toml(text)
    assert data["model_providers"]["mine"] == {"name": "Mine", "base_url": "https://example.com/v1",
                                               "http_headers": {"X-Team": "a#b"}}
    assert data["model_providers"][ID] == {
        "name": "Databricks FMAPI", "base_url": "https://ws.cloud.databricks.com/serving-endpoints",
        "wire_api": "responses", "http_headers": {"x-databricks-use-coding-agent-mode": "true"},
        "auth": {"command": "/home/u/.codex/fmapi-key-helper.sh", "timeout_ms": 30000, "refresh_interval_ms": 3600000},
    }
    assert (data["model_provider"], data["model"]) == (ID, "databricks-gpt-5-2")
    assert "profile" not in data and "profiles" not in data
    assert undo["top"]["model"]["original"] == 'model = "gpt-5.5"   # my usual model'
    assert undo["top"]["model_provider"]["original"] is None


ORIGINALS = {
    "missing": None,
    "empty": "",
    "rich": RICH,
    "rich with newline": RICH + "\n",
    "trailing blank lines": 'model = "o3"\n\n\n',
    "top-level only, no newline": 'model_provider = "openai"\nmodel = "o3"',
    "comments only": "# nothing yet\n",
    "tables only": "[tui]\nnotifications = true\n",
    "crlf": 'model = "o3"\r\n\r\n[tui]\r\nnotifications = true\r\n',
    "multi-line model": 'model = """\ngpt-5\n"""\n[tui]\nx = 1\n',
}


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_merge_reruns_and_unmerge_round_trip_exactly(name):
    original = ORIGINALS[name]
    first, undo = merged(original)
    data = parse_toml(first)
    assert (data["model_provider"], data["model"]) == (ID, "databricks-gpt-5-2")
    assert data["model_providers"][ID]["auth"]["command"] == "/home/u/.codex/fmapi-key-helper.sh"
    before = parse_toml(original or "")
    for key, value in before.items():  # everything of the user's is still there, unchanged
        if key == "model_providers":
            assert {k: v for k, v in data[key].items() if k != ID} == {k: v for k, v in value.items() if k != ID}
        elif key not in ("model", "model_provider"):
            assert data[key] == value
    # a re-run finds its own lines: same bytes, no second table, the user's originals kept
    again, undo_again = merged(first, previous=full_record(undo))
    assert again == first
    headers = [s["path"] for s in fmapi.toml_statements(again) if s["kind"] == "table" and s["path"][1:2] == (ID,)]
    assert headers == [("model_providers", ID), ("model_providers", ID, "auth")]
    assert undo_again == undo
    assert CODEX.unmerge(again, full_record(undo_again)) == (original or "")


def test_fmapi_tables_are_replaced_where_they_are():
    text = "[a]\nx = 1\n\n" + expected_block(dict(RECORD, host="https://old.example.com")) + "\n[b]\ny = 2\n"
    new, _ = merged(text)
    assert new == ('model_provider = "databricks-fmapi"\nmodel = "databricks-gpt-5-2"\n'
                   "[a]\nx = 1\n\n" + expected_block() + "\n[b]\ny = 2\n")


def test_rerun_with_another_model_still_restores_the_users_model():
    first, undo = merged(RICH)
    second, undo2 = merged(first, dict(RECORD, model="databricks-gpt-5-2-codex"), full_record(undo))
    assert 'model = "databricks-gpt-5-2-codex"' in second
    assert undo2["top"]["model"]["original"] == 'model = "gpt-5.5"   # my usual model'
    assert CODEX.unmerge(second, full_record(undo2)) == RICH


def test_rerun_after_the_user_switched_provider_remembers_the_new_choice():
    first, undo = merged(RICH)
    switched = first.replace('model_provider = "databricks-fmapi"', 'model_provider = "mine"')
    second, undo2 = merged(switched, previous=full_record(undo))
    assert undo2["top"]["model_provider"]["original"] == 'model_provider = "mine"'
    assert 'model_provider = "mine"' in CODEX.unmerge(second, full_record(undo2))


def test_unmerge_keeps_what_the_user_changed_since_and_says_so():
    first, undo = merged(RICH)
    edited = first.replace('model = "databricks-gpt-5-2"', 'model = "databricks-gpt-5-2-codex"  # tried this')
    report = fmapi.Report()
    restored = CODEX.unmerge(edited, full_record(undo), report, "~/.codex/config.toml")
    assert restored == RICH.replace('model = "gpt-5.5"   # my usual model',
                                    'model = "databricks-gpt-5-2-codex"  # tried this')
    assert report.kept == ['~/.codex/config.toml: `model = "databricks-gpt-5-2-codex"  # tried this` '
                           "(you changed it after fmapi set it)"]


def test_unmerge_without_the_record_removes_what_is_clearly_fmapis():
    first, _ = merged("[tui]\nnotifications = true\n")
    record = {"agent": "codex", "dir": RECORD["dir"]}  # what discovery knows when the registry is gone
    assert CODEX.unmerge(first, record) == "[tui]\nnotifications = true\n"


def test_unmerge_of_a_file_that_fmapi_created_is_empty():
    first, undo = merged(None)
    assert undo["created"] is True
    assert CODEX.unmerge(first, full_record(undo)) == ""


def test_the_editor_works_without_tomllib(monkeypatch):
    """Python 3.9 and 3.10: fmapi's own reading decides what is valid."""
    monkeypatch.setattr(fmapi, "_tomllib", lambda: None)
    first, undo = merged(RICH)
    assert fmapi.toml_check(first) is None
    CODEX._validate("config.toml", first, RECORD)
    assert CODEX.unmerge(first, full_record(undo)) == RICH
    with pytest.raises(fmapi.TomlSyntaxError):
        fmapi.toml_check('model = "unterminated\n')


def test_a_merge_that_would_not_select_fmapis_provider_is_refused():
    with pytest.raises(fmapi.FmapiError) as err:
        CODEX._validate("config.toml", 'model_provider = "openai"\n', RECORD)
    assert "the file is untouched" in err.value.message
    with pytest.raises(fmapi.FmapiError) as err:
        CODEX._validate("config.toml", 'model_provider = "databricks-fmapi"\n[a\n', RECORD)
    assert "not be valid TOML" in err.value.message


def test_strings_fmapi_writes_are_valid_toml():
    tricky = 'a "quoted" \\path\\ with\ttab, \x7f, é and \u2028'
    assert parse_toml("k = %s" % fmapi.toml_quote(tricky))["k"] == tricky
    record = dict(RECORD, dir='/home/u/odd "dir" \\x', model="model with \"quotes\"")
    text, _ = merged(None, record)
    data = parse_toml(text)
    assert data["model"] == 'model with "quotes"'
    assert data["model_providers"][ID]["auth"]["command"] == '/home/u/odd "dir" \\x/fmapi-key-helper.sh'


# --- refusing, before anything is minted or written --------------------------------------


def test_legacy_profiles_are_refused_with_exactly_what_to_change():
    text = ('profile = "work"\nmodel = "o3"\n\n[profiles.work]\nmodel = "gpt-5"\napproval_policy = "never"\n\n'
            "[profiles.work.model_providers.x]\nname = \"x\"\n\n[tui]\nx = 1\n\n[profiles.home]\nmodel = \"o4\"\n")
    with pytest.raises(fmapi.FmapiError) as err:
        CODEX._refuse_legacy_profiles("/home/u/.codex/config.toml", text)
    message = err.value.render()
    assert "legacy Codex profiles, which Codex 0.134 and newer refuse to load; fmapi changed nothing." in message
    assert '- line 1: delete `profile = "work"` and start Codex with `codex --profile work`' in message
    assert "- lines 4-6, 8-9: move the settings of profile 'work' into /home/u/.codex/work.config.toml" in message
    assert "- lines 14-15: move the settings of profile 'home'" in message
    assert "`codex --profile home`" in message


def test_dotted_profiles_and_foreign_provider_forms_are_refused():
    with pytest.raises(fmapi.FmapiError) as err:
        CODEX._refuse_legacy_profiles("c.toml", 'profiles.fast.model = "o4-mini"\n')
    assert "line 1: move the settings of profile 'fast'" in err.value.render()
    with pytest.raises(fmapi.FmapiError) as err:
        CODEX._refuse_foreign_provider("c.toml", 'model_providers.databricks-fmapi.name = "x"\n')
    assert "line 1" in err.value.message and "[model_providers.NAME]" in err.value.fix
    with pytest.raises(fmapi.FmapiError) as err:
        CODEX._refuse_foreign_provider("c.toml", 'model_providers = { mine = { name = "m" } }\n')
    assert "inline table" in err.value.message
    CODEX._refuse_foreign_provider("c.toml", merged(RICH)[0])  # fmapi's own tables are fine


# --- the CLI against the fake workspace ----------------------------------------------------

CODEX_STUB = "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'codex-cli %s'; exit 0; fi\nexit 0\n"


@pytest.fixture
def codex_stub(home_bin):
    return make_stub(home_bin, "codex", CODEX_STUB % "0.169.0")


@pytest.fixture
def setup_codex(home, workspace, logged_in, codex_stub):
    def run(*extra, check=True):
        proc = run_fmapi("setup", "--agent", "codex", "--yes", "--host", workspace.url, "--profile", logged_in, *extra)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def codex_dir(home):
    return home / ".codex"



def run_helper(helper):
    """As Codex runs it: directly, no shell."""
    return subprocess.run([str(helper)], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)


def test_setup_from_nothing(home, workspace, setup_codex):
    proc = setup_codex()
    d = codex_dir(home)
    config = (d / "config.toml").read_text()
    helper = d / "fmapi-key-helper.sh"
    assert config == 'model_provider = "databricks-fmapi"\nmodel = "databricks-gpt-5-2"\n\n' + expected_block(
        dict(RECORD, host=workspace.url, dir=str(d)))
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in d.iterdir()} == {
        "config.toml": 0o600, "fmapi-key-helper.sh": 0o700, ".fmapi-pat-cache": 0o600, ".fmapi-pat-ledger": 0o600,
        ".fmapi-pat-cache.lock": 0o600}
    token = cache_of(d)["token"]
    assert run_helper(helper).stdout == token + "\n"
    info = workspace.find_pat(token)
    assert re.fullmatch(r"Codex FMAPI \(created %s, #[0-9a-f]{8}\)" % TODAY, info["comment"])
    assert abs((info["expiry_time"] - info["creation_time"]) / 1000 - 86400) < 5
    assert "`codex`" in proc.stdout and 'codex exec "' in proc.stdout
    assert token not in proc.stdout + proc.stderr + config


def test_agent_flag_without_the_setup_word_and_every_flag(home, workspace, logged_in, codex_stub):
    proc = run_fmapi("--agent", "codex", "--yes", "--host", workspace.url + "/", "--profile", logged_in,
                     "--model", "databricks-gpt-5-2-codex", "--pat-lifetime", "7")
    assert proc.returncode == 0, proc.stderr
    data = parse_toml((codex_dir(home) / "config.toml").read_text())
    assert data["model"] == "databricks-gpt-5-2-codex"
    assert data["model_providers"][ID]["base_url"] == workspace.url + "/serving-endpoints"
    assert data["model_providers"][ID]["auth"]["refresh_interval_ms"] == 3600000
    info = workspace.find_pat(cache_of(codex_dir(home))["token"])
    assert abs((info["expiry_time"] - info["creation_time"]) / 1000 - 7 * 86400) < 5
    assert not (home / ".claude").exists()  # --agent codex touches nothing of Claude's


def test_codex_home_is_honoured(home, workspace, setup_codex, tmp_path, monkeypatch):
    custom = tmp_path / "my codex home"
    monkeypatch.setenv("CODEX_HOME", str(custom))
    proc = setup_codex()
    data = parse_toml((custom / "config.toml").read_text())
    assert data["model_providers"][ID]["auth"]["command"] == str(custom / "fmapi-key-helper.sh")
    assert run_helper(custom / "fmapi-key-helper.sh").returncode == 0
    assert not codex_dir(home).exists()
    assert "CODEX_HOME" in proc.stdout
    assert run_fmapi("token", "--agent", "codex").stdout == cache_of(custom)["token"] + "\n"


def test_merge_into_the_users_file_and_rerun_is_idempotent(home, workspace, setup_codex):
    d = codex_dir(home)
    d.mkdir()
    (d / "config.toml").write_text(RICH)
    (d / "config.toml").chmod(0o644)
    setup_codex()
    first = (d / "config.toml").read_bytes()
    assert first.decode().startswith(RICH.split("\n")[0] + '\nmodel_provider = "databricks-fmapi"\n')
    assert first.decode().endswith(RICH.split("\n", 2)[2] + "\n\n" + expected_block(dict(RECORD, host=workspace.url, dir=str(d))))
    assert stat.S_IMODE((d / "config.toml").stat().st_mode) == 0o644  # the user's mode stays
    token = cache_of(d)["token"]
    again = run_fmapi("setup", "--agent", "codex", "--yes")  # a re-run takes the install's answers
    assert again.returncode == 0, again.stderr
    assert (d / "config.toml").read_bytes() == first
    assert cache_of(d)["token"] == token
    assert len(workspace.pats_with_comment_prefix("Codex FMAPI")) == 1
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (d / "config.toml").read_text() == RICH
    assert sorted(p.name for p in d.iterdir()) == ["config.toml"]


def test_uninstall_of_a_file_fmapi_created_removes_it(home, workspace, setup_codex):
    setup_codex()
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "OpenAI Codex" in proc.stdout
    assert not codex_dir(home).exists()
    assert workspace.pats_with_comment_prefix("Codex FMAPI")  # not revoked unless asked


def test_uninstall_keeps_the_users_later_edits_and_says_so(home, workspace, setup_codex):
    d = codex_dir(home)
    d.mkdir()
    (d / "config.toml").write_text('model = "o3"\n')
    setup_codex()
    config = d / "config.toml"
    config.write_text(config.read_text().replace('model = "databricks-gpt-5-2"', 'model = "databricks-gpt-5-2-codex"')
                      + "\n[tui]\nnotifications = true\n")
    proc = run_fmapi("--uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert config.read_text() == 'model = "databricks-gpt-5-2-codex"\n\n\n[tui]\nnotifications = true\n'
    assert 'model = "databricks-gpt-5-2-codex"` (you changed it after fmapi set it)' in proc.stdout


def test_uninstall_finds_an_install_the_registry_lost_and_revokes_only_codex_pats(home, workspace, setup_codex):
    d = codex_dir(home)
    d.mkdir()
    (d / "config.toml").write_text("[tui]\nnotifications = true\n")
    setup_codex()
    claude_pat = workspace.add_pat("Claude Code FMAPI (created 2026-01-01)")
    mine = workspace.add_pat("my own token")
    other_machine = workspace.add_pat("Codex FMAPI (created 2026-01-01)")
    (home / ".local" / "share" / "fmapi" / "installs.json").unlink()
    status = run_fmapi("status")
    assert "OpenAI Codex: ~/.codex/config.toml" in status.stdout
    proc = run_fmapi("--uninstall", "--yes", "--revoke")
    assert proc.returncode == 0, proc.stderr
    assert (d / "config.toml").read_text() == "[tui]\nnotifications = true\n"
    assert not (d / "fmapi-key-helper.sh").exists() and not (d / ".fmapi-pat-cache").exists()
    live = workspace.pat_values()
    assert other_machine["token_value"] not in live and not workspace.pats_with_comment_prefix("Codex FMAPI")
    assert claude_pat["token_value"] in live and mine["token_value"] in live


def test_fmapi_token_and_the_helper_renew(home, workspace, setup_codex):
    setup_codex()
    d = codex_dir(home)
    assert run_fmapi("token", "--agent", "codex").stdout == cache_of(d)["token"] + "\n"
    old = cache_of(d)["token"]
    (d / ".fmapi-pat-cache").unlink()
    proc = run_helper(d / "fmapi-key-helper.sh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == cache_of(d)["token"] != old
    assert proc.stdout.strip() in workspace.pat_values()


def test_too_old_codex_is_refused_before_anything_happens(home, workspace, logged_in, home_bin):
    make_stub(home_bin, "codex", CODEX_STUB % "0.117.0")
    proc = run_fmapi("setup", "--agent", "codex", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 1
    assert "OpenAI Codex 0.117.0 is too old: fmapi needs 0.118.0 or newer." in proc.stderr
    assert "npm install -g @openai/codex@latest" in proc.stderr
    assert not workspace.requests_to("/api/2.0/token/create")
    assert not codex_dir(home).exists()


def test_unparsable_config_is_left_untouched(home, workspace, setup_codex):
    d = codex_dir(home)
    d.mkdir()
    broken = b'model = "o3"\n[tui\nnotifications = true\n'
    (d / "config.toml").write_bytes(broken)
    proc = setup_codex(check=False)
    assert proc.returncode == 1
    assert "config.toml is not valid TOML" in proc.stderr and "fmapi left it untouched" in proc.stderr
    assert (d / "config.toml").read_bytes() == broken
    assert sorted(p.name for p in d.iterdir()) == ["config.toml"]
    assert not workspace.requests_to("/api/2.0/token/create")


def test_legacy_profiles_stop_setup_with_instructions(home, workspace, setup_codex):
    d = codex_dir(home)
    d.mkdir()
    text = 'profile = "work"\n\n[profiles.work]\nmodel = "o3"\n'
    (d / "config.toml").write_text(text)
    proc = setup_codex(check=False)
    assert proc.returncode == 1
    assert "legacy Codex profiles" in proc.stderr
    assert 'line 1: delete `profile = "work"`' in proc.stderr
    assert "lines 3-4: move the settings of profile 'work' into ~/.codex/work.config.toml" in proc.stderr
    assert (d / "config.toml").read_text() == text
    assert not workspace.requests_to("/api/2.0/token/create")


def test_claude_stays_the_default_agent(home, workspace, logged_in, codex_stub, home_bin):
    make_stub(home_bin, "claude", "#!/bin/sh\necho '2.1.331 (Claude Code)'\n")
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 0, proc.stderr
    assert (home / ".claude" / "settings.json").exists()
    assert not codex_dir(home).exists()


def test_interactive_setup_offers_the_workspaces_gpt_endpoints(home, workspace, logged_in, codex_stub):
    from test_claude import DOWN, ENTER, OTHER, Terminal

    term = Terminal(["--agent", "codex", "--host", workspace.url, "--profile", logged_in], cwd=os.getcwd())
    term.expect("renewed through the Databricks CLI)")  # the Credential selector: PAT
    term.send(ENTER)
    term.expect("Model:")
    menu = term.expect(OTHER)
    assert menu.index("databricks-gpt-5-2") < menu.index("databricks-gpt-5-2-codex")
    assert "claude" not in menu and "gemini" not in menu
    term.send(DOWN + ENTER)
    term.expect("7 days")  # drawn once the selector reads keys: what is typed before may be flushed
    term.send(ENTER)
    assert term.finish() == 0, term.buffer
    assert parse_toml((codex_dir(home) / "config.toml").read_text())["model"] == "databricks-gpt-5-2-codex"
