"""The real Claude Code and Codex in OAuth mode (`fmapi setup --auth oauth`), end to end against the
fake workspace: every model request carries an OAuth access token as its Bearer (no PAT exists), and
the agents keep working after the first access token expired. The fake workspace issues 30-second
access tokens here (its `oauth_token_lifetime`), so setup gives the agents a 7-second cache time."""

import time

import pytest

from conftest import PROFILE, cache_of, databricks_calls, run_databricks, run_fmapi
from test_claude_e2e import MESSAGES, PROMPT
from test_claude_e2e import REPLY as CLAUDE_REPLY
from test_claude_e2e import claude, run_claude  # noqa: F401 - the fixture
from test_codex_e2e import MODEL as CODEX_MODEL
from test_codex_e2e import RESPONSES, codex, run_codex  # noqa: F401 - the fixture
from test_codex_e2e import REPLY as CODEX_REPLY

LIFETIME = 30  # seconds an OAuth access token lives in these tests


@pytest.fixture
def short_tokens(home, workspace):
    """A workspace whose OAuth access tokens live LIFETIME seconds, and a CLI signed in to it."""
    workspace.oauth_token_lifetime = LIFETIME
    assert run_databricks("auth", "login", "--host", workspace.url, "--profile", PROFILE).returncode == 0
    return workspace


def show(proc, workspace):
    return "exit %s\nstdout:\n%s\nstderr:\n%s\nrequests: %s" % (
        proc.returncode, proc.stdout, proc.stderr[-3000:], [(r["method"], r["path"]) for r in workspace.requests])


def bearers(workspace, path):
    """(bearer, time sent) of every model request to ``path`` so far."""
    found = []
    for request in workspace.requests_to(path, "POST"):
        scheme, _, value = request["headers"].get("authorization", "").partition(" ")
        assert scheme == "Bearer", request["headers"]
        found.append((value.strip(), request["time"]))
    return found


def assert_oauth_bearers(workspace, sent):
    """Each request carried an OAuth access token the workspace issued, still valid when sent; no PAT."""
    assert sent
    for token, when in sent:
        assert not token.startswith("dapi")
        expiry = workspace.oauth_access_tokens.get(token)
        assert expiry is not None, "not an OAuth access token of this workspace"
        assert when < expiry, "sent %.1f s after it expired" % (when - expiry)
    assert not workspace.tokens and not workspace.requests_to("/api/2.0/token/")


def wait_until_expired(directory):
    left = cache_of(directory)["expiry"] - time.time()
    time.sleep(max(0.0, left) + 1.5)


def test_claude_in_oauth_mode_keeps_working_after_the_first_token_expired(home, short_tokens, claude, tmp_path):  # noqa: F811
    workspace = short_tokens
    workspace.reply_text = CLAUDE_REPLY
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", PROFILE, "--auth", "oauth", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = home / ".claude"
    assert '"CLAUDE_CODE_API_KEY_HELPER_TTL_MS": "7000"' in (d / "settings.json").read_text()
    first = cache_of(d)["token"]

    proc = run_claude(claude, tmp_path)
    assert proc.returncode == 0 and CLAUDE_REPLY in proc.stdout, show(proc, workspace)
    assert_oauth_bearers(workspace, bearers(workspace, MESSAGES))
    assert PROMPT in str([r["json"] for r in workspace.requests_to(MESSAGES, "POST")])

    wait_until_expired(d)
    assert workspace.credential_kind(first) is None  # the first access token is dead now
    workspace.clear_requests()
    renewals = len([c for c in databricks_calls(tmp_path) if "--force-refresh" in c])

    proc = run_claude(claude, tmp_path)

    assert proc.returncode == 0 and CLAUDE_REPLY in proc.stdout, show(proc, workspace)
    sent = bearers(workspace, MESSAGES)
    assert_oauth_bearers(workspace, sent)
    assert first not in {token for token, _ in sent}
    assert len([c for c in databricks_calls(tmp_path) if "--force-refresh" in c]) > renewals


def test_codex_in_oauth_mode_keeps_working_after_the_first_token_expired(home, short_tokens, codex, tmp_path):  # noqa: F811
    workspace = short_tokens
    workspace.reply_text = CODEX_REPLY
    proc = run_fmapi("setup", "--agent", "codex", "--yes", "--host", workspace.url, "--profile", PROFILE,
                     "--auth", "oauth", "--model", CODEX_MODEL, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = home / ".codex"
    assert "refresh_interval_ms = 7000" in (d / "config.toml").read_text()
    first = cache_of(d)["token"]

    proc = run_codex(codex, tmp_path)
    assert proc.returncode == 0 and CODEX_REPLY in proc.stdout, show(proc, workspace)
    assert_oauth_bearers(workspace, bearers(workspace, RESPONSES))

    wait_until_expired(d)
    assert workspace.credential_kind(first) is None
    workspace.clear_requests()

    proc = run_codex(codex, tmp_path)

    assert proc.returncode == 0 and CODEX_REPLY in proc.stdout, show(proc, workspace)
    sent = bearers(workspace, RESPONSES)
    assert_oauth_bearers(workspace, sent)
    assert first not in {token for token, _ in sent}
