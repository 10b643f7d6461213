"""Pieces of fmapi that need no workspace: URL and profile rules, time parsing, atomic
writes, the cache's freshness rule and the legacy-wrapper cutter."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fmapi  # noqa: E402


@pytest.mark.parametrize("url, expected", [
    ("https://my-workspace.cloud.databricks.com", "https://my-workspace.cloud.databricks.com"),
    ("https://my-workspace.cloud.databricks.com/", "https://my-workspace.cloud.databricks.com"),
    ("  https://adb-1.2.azuredatabricks.net/?o=123#x  ", "https://adb-1.2.azuredatabricks.net"),
    ("https://x.cloud.databricks.com/some/path", "https://x.cloud.databricks.com"),
    ("HTTPS://X.cloud.databricks.com:8443/", "https://x.cloud.databricks.com:8443"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ("http://localhost:9000", "http://localhost:9000"),
    ("http://[::1]:7000/api", "http://[::1]:7000"),
    ("http://127.0.0.2:8080", "http://127.0.0.2:8080"),
])
def test_workspace_urls_are_normalised(url, expected):
    assert fmapi.normalize_host(url) == expected


@pytest.mark.parametrize("url", [
    "my-workspace.cloud.databricks.com", "ftp://my-workspace.cloud.databricks.com",
    "http://my-workspace.cloud.databricks.com", "http://10.0.0.1:80",
    "http://127.example.com", "http://127.0.0.1.nip.io:80", "http://localhost.example.com",
])
def test_anything_but_https_gets_the_seed_message(url):
    with pytest.raises(fmapi.UsageError) as err:
        fmapi.normalize_host(url)
    assert err.value.message == "Workspace URL must start with https://"
    assert err.value.code == 2


@pytest.mark.parametrize("url", ["https://", "https://a b.com", "https://x.com:notaport"])
def test_malformed_urls_get_one_line(url):
    with pytest.raises(fmapi.UsageError) as err:
        fmapi.normalize_host(url)
    assert "not a valid workspace URL" in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize("name", ["my-profile", "DEFAULT", "a_b-9", "acme.prod", "my profile", "équipe", "a/b"])
def test_good_profile_names(name):
    """Every name .databrickscfg can hold as a section (the CLI accepts them: databricks/databricks-vscode#447)."""
    assert fmapi.validate_profile(name) == name


@pytest.mark.parametrize("name", ["", "  ", "[x]", "a]b", "-p", "#x", ";x", "a\nb", "__settings__"])
def test_bad_profile_names(name):
    with pytest.raises(fmapi.UsageError):
        fmapi.validate_profile(name)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-24T15:04:05Z", 1795532645.0),
    ("2026-11-24T15:04:05.123456789Z", 1795532645.123456789),
    ("2026-11-24T16:04:05.5+01:00", 1795532645.5),
    ("2026-11-24T10:04:05.000000001-05:00", 1795532645.000000001),
    ("2026-11-24T15:04:05+0000", 1795532645.0),
])
def test_go_rfc3339nano(text, expected):
    assert fmapi.parse_rfc3339(text) == pytest.approx(expected, abs=1e-6)


def test_rfc3339_on_python39_too():
    py39 = Path("/root/.pyenv/versions/3.9.18/bin/python3.9")
    if not py39.exists():
        pytest.skip("no Python 3.9 on this machine")
    out = subprocess.run([str(py39), "-c", "import fmapi; print(fmapi.parse_rfc3339('2026-11-24T16:04:05.123456789+01:00'))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert float(out) == pytest.approx(1795532645.123456789)


def test_rfc3339_rejects_garbage():
    with pytest.raises(ValueError):
        fmapi.parse_rfc3339("tomorrow")


def test_cache_freshness_rule():
    cache = {"token": "dapi" + "0" * 32, "expiry": 10_000, "host": "https://h"}
    assert fmapi.usable_token(cache, "https://h", 300, now=9_000) == cache["token"]
    assert fmapi.usable_token(cache, "https://h", 300, now=9_800) is None  # under 5 minutes left
    assert fmapi.usable_token(cache, "https://other", 300, now=9_000) is None  # another workspace's
    assert fmapi.usable_token({"host": "https://h", "expiry": 10_000}, "https://h", 300, now=0) is None
    assert fmapi.usable_token(None, "https://h", 300) is None


def test_agent_ttl_is_a_quarter_of_the_lifetime_capped_at_one_hour():
    claude = fmapi.AGENTS["claude"]
    assert claude.ttl(86400) == 3600  # a 1-day PAT
    assert claude.ttl(7 * 86400) == 3600
    assert claude.ttl(3600) == 900  # a 1-hour OAuth token: 15 minutes (anthropics/claude-code#43436)
    # a token handed out must outlive the agent's TTL by five minutes
    assert claude.min_left(86400) == 3600 + 300
    assert claude.min_left(3600) == 900 + 300
    # a large margin is capped at half the lifetime: a fresh 1-hour token still qualifies
    assert claude.min_left(3600, margin=12 * 3600) == 900 + 1800 < 3600


def test_write_atomic_sets_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "d" / "secret.json"
    fmapi.write_atomic(target, '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'
    assert target.stat().st_mode & 0o777 == 0o600
    fmapi.write_atomic(target, b"#!/bin/sh\n", 0o700)
    assert target.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.json"]


def test_write_atomic_cleans_up_when_interrupted(tmp_path, mocker):
    tmp_path = tmp_path / "d"
    tmp_path.mkdir()
    target = tmp_path / "settings.json"
    target.write_text("old")
    mocker.patch("os.replace", side_effect=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        fmapi.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_sigterm_during_a_write_leaves_no_temp_file(tmp_path):
    """A real SIGTERM while fmapi writes: the old file stays whole and no temp file remains."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        sys.path.insert(0, %r)
        import fmapi
        signal.signal(signal.SIGTERM, fmapi._terminate)
        real_replace = os.replace
        def slow_replace(a, b):
            print("ready", flush=True)
            time.sleep(30)
            real_replace(a, b)
        os.replace = slow_replace
        fmapi.write_atomic(sys.argv[1], "new contents")
    """) % str(ROOT)
    tmp_path = tmp_path / "d"
    tmp_path.mkdir()
    target = tmp_path / "settings.json"
    target.write_text("old contents")
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert target.read_text() == "old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


RC_BEFORE = (
    b"# my zshrc\n"
    b"export PATH=$HOME/bin:$PATH\n"
    b"# >>> conda initialize >>>\n__conda_setup=x\n# <<< conda initialize <<<\n"
    b"# >>> claude-fmapi wrapper >>>\n"
    b"claude() {\n  ANTHROPIC_AUTH_TOKEN=$(databricks auth token) command claude \"$@\"\n}\n"
    b"# <<< claude-fmapi wrapper <<<\n"
    b"alias ll='ls -l'   \n"
    b"# >>> my-own wrapper >>>\nfoo() { echo mine; }\n# <<< my-own wrapper <<<\n"
    b"no newline at end"
)
RC_AFTER = (
    b"# my zshrc\n"
    b"export PATH=$HOME/bin:$PATH\n"
    b"# >>> conda initialize >>>\n__conda_setup=x\n# <<< conda initialize <<<\n"
    b"alias ll='ls -l'   \n"
    b"# >>> my-own wrapper >>>\nfoo() { echo mine; }\n# <<< my-own wrapper <<<\n"
    b"no newline at end"
)


def test_legacy_wrapper_blocks_are_cut_byte_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    rc = tmp_path / ".zshrc"
    rc.write_bytes(RC_BEFORE)
    rc.chmod(0o644)
    (tmp_path / ".bashrc").write_bytes(b"# nothing of ours\n")
    assert fmapi.legacy_rc_files() == [str(rc)]
    report = fmapi.Report()
    fmapi.remove_legacy_wrappers(report)
    assert rc.read_bytes() == RC_AFTER
    assert rc.stat().st_mode & 0o777 == 0o644  # RC files keep their mode
    backups = list(tmp_path.glob(".zshrc.fmapi-backup-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == RC_BEFORE
    assert (tmp_path / ".bashrc").read_bytes() == b"# nothing of ours\n"
    assert fmapi.legacy_rc_files() == []


def test_legacy_wrapper_removal_keeps_a_symlinked_rc_a_symlink(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "zshrc").write_bytes(RC_BEFORE)
    (tmp_path / ".zshrc").symlink_to(dotfiles / "zshrc")
    fmapi.remove_legacy_wrappers(fmapi.Report())
    assert (tmp_path / ".zshrc").is_symlink()
    assert (dotfiles / "zshrc").read_bytes() == RC_AFTER


def test_helper_script_calls_the_real_interpreter_and_no_token(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    spec = fmapi.TokenSpec("claude", str(tmp_path / ".claude"), "https://h.cloud.databricks.com", "p", 1, 3900, "Claude Code FMAPI")
    text = fmapi.helper_script(spec, "Claude Code")
    assert text.startswith("#!/bin/sh\n")
    exec_line = [line for line in text.splitlines() if line.startswith("exec ")][0]
    interpreter = exec_line.split()[1].strip("'")
    assert os.path.isabs(interpreter) and "shims" not in interpreter
    assert " -I -S " in exec_line
    assert "dapi" not in text
    assert fmapi.spec_from_helper  # round trip below
    helper = tmp_path / "h.sh"
    helper.write_text(text)
    again = fmapi.spec_from_helper(str(helper))
    assert (again.host, again.profile, again.lifetime_days, again.dir) == (spec.host, "p", 1, spec.dir)


def test_python_floor_is_enforced_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setattr(sys, "version_info", (3, 8, 10))
    assert fmapi.main(["--version"]) == 1
    assert "needs Python 3.9 or newer" in capsys.readouterr().err
