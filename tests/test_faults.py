"""The token path under faults, against the fake workspace: transient answers (429, 5xx with
Retry-After, resets, hangs, a refused port) retried within one deadline, permanent ones not,
HTML and plain-text error bodies shown as one line, and the helper answering within its budget
however the workspace misbehaves (a cached token that is still alive handed out meanwhile)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import age_cache, cache_of, make_stub, run_fmapi

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fmapi  # noqa: E402

CREATE = "/api/2.0/token/create"
LIST = "/api/2.0/token/list"
PROXY_PAGE = """<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title><style>body { font: 12px sans-serif }</style></head>
<body><center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.25.3</center>
<script>console.log("x")</script>
</body></html>
"""


@pytest.fixture
def bearer(workspace):
    access, _ = workspace.issue_oauth()
    return access


def creates(workspace):
    return workspace.requests_to(CREATE, "POST")


# --- api(): what is retried, for how long --------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_answers_are_retried_until_one_succeeds(workspace, bearer, status):
    workspace.fail_next("GET", LIST, status, times=2)
    start = time.monotonic()
    assert fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(8)) == {}
    assert len(workspace.requests_to(LIST)) == 3
    assert time.monotonic() - start < 2  # short back-off: 0.25 s, then 0.5 s at most


def test_retry_after_is_honoured(workspace, bearer):
    workspace.fail_next("GET", LIST, 429, headers={"Retry-After": "1"})
    start = time.monotonic()
    fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(8))
    first, second = workspace.requests_to(LIST)
    assert second["time"] - first["time"] >= 0.95
    assert time.monotonic() - start < 3


def test_retry_after_as_an_http_date(workspace, bearer):
    import email.utils

    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    workspace.fail_next("GET", LIST, 503, headers={"Retry-After": when})
    fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(8))
    first, second = workspace.requests_to(LIST)
    assert 0.9 <= second["time"] - first["time"] < 3.5


def test_a_huge_retry_after_is_capped(workspace, bearer, monkeypatch):
    monkeypatch.setattr(fmapi, "RETRY_AFTER_MAX", 0.5)
    workspace.fail_next("GET", LIST, 503, headers={"Retry-After": "3600"})
    start = time.monotonic()
    fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(8))
    assert 0.45 <= time.monotonic() - start < 2


def test_a_retry_after_beyond_the_deadline_fails_at_once(workspace, bearer):
    workspace.fail_next("POST", CREATE, 429, headers={"Retry-After": "30"})
    start = time.monotonic()
    with pytest.raises(fmapi.ApiError) as err:
        fmapi.api(workspace.url, bearer, "POST", CREATE, {"comment": "x", "lifetime_seconds": 60},
                  deadline=fmapi.Deadline(3))
    assert time.monotonic() - start < 1  # waiting 3 s to give up then is no use to anyone
    assert err.value.status == 429


@pytest.mark.parametrize("kind", ["reset", "close"])
def test_a_dropped_connection_is_retried(workspace, bearer, kind):
    workspace.fault_next("GET", LIST, kind)
    assert fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(8)) == {}
    assert len(workspace.requests_to(LIST)) == 2


def test_a_hung_workspace_times_out_and_is_retried_within_the_deadline(workspace, bearer, monkeypatch):
    monkeypatch.setattr(fmapi, "READ_TIMEOUT", 0.5)
    workspace.fault_next("GET", LIST, "hang")
    start = time.monotonic()
    assert fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(8)) == {}
    assert 0.5 <= time.monotonic() - start < 2.5
    assert len(workspace.requests_to(LIST)) == 2


def test_a_workspace_that_never_answers_costs_the_deadline_and_no_more(workspace, bearer):
    workspace.fault_next("GET", LIST, "hang", times=100)
    start = time.monotonic()
    with pytest.raises(fmapi.Unreachable) as err:
        fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(2))
    assert 1.5 <= time.monotonic() - start < 2.6
    assert "no answer" in err.value.message and "\n" not in err.value.message


def test_a_refused_port_is_retried_then_reported_in_one_line(workspace, bearer):
    workspace.stop()
    start = time.monotonic()
    with pytest.raises(fmapi.Unreachable) as err:
        fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(1.5))
    assert time.monotonic() - start < 2
    assert "cannot reach %s" % workspace.url in err.value.message
    assert "tries" in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_permanent_answers_are_not_retried(workspace, bearer, status):
    workspace.fail_next("POST", CREATE, status)
    with pytest.raises(fmapi.ApiError) as err:
        fmapi.api(workspace.url, bearer, "POST", CREATE, {"comment": "x", "lifetime_seconds": 60},
                  deadline=fmapi.Deadline(8))
    assert err.value.status == status
    assert len(creates(workspace)) == 1


def test_a_proxy_html_page_is_one_line_without_markup(workspace, bearer):
    workspace.fail_next("GET", LIST, 502, body=PROXY_PAGE, times=100)
    with pytest.raises(fmapi.ApiError) as err:
        fmapi.api(workspace.url, bearer, "GET", LIST, deadline=fmapi.Deadline(1))
    text = err.value.render().splitlines()[0]
    assert "502 Bad Gateway" in text
    assert "<" not in text and "console" not in text and "font" not in text
    assert len(workspace.requests_to(LIST)) >= 2


def test_the_workspace_invalid_token_page_is_understood(workspace, bearer):
    page = ('<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
            "<title>Error 403 Invalid access token.</title>\n</head>\n<body><h2>HTTP ERROR 403</h2>\n"
            "<p>Problem accessing /api/2.0/token/create. Reason:\n<pre>    Invalid access token.</pre></p>\n"
            "</body>\n</html>\n")  # as Databricks' Jetty front end serves it (Azure/MachineLearningNotebooks#840)
    workspace.fail_next("POST", CREATE, 403, body=page)
    with pytest.raises(fmapi.ApiError) as err:
        fmapi.api(workspace.url, bearer, "POST", CREATE, {}, deadline=fmapi.Deadline(8))
    assert err.value.api_message == "Error 403 Invalid access token."
    assert isinstance(fmapi._explain_token_api_error(err.value, workspace.url, "p"), fmapi.SessionExpired)


def test_plain_text_bodies_become_one_line():
    assert fmapi.one_line(b"upstream connect error or disconnect/reset before headers.\n  reset reason: overflow\n") == (
        "upstream connect error or disconnect/reset before headers. reset reason: overflow")
    assert fmapi.one_line("x" * 500).endswith("\u2026") and len(fmapi.one_line("x" * 500)) == 200
    assert fmapi.one_line("<p>a &amp; b</p>") == "a & b"
    assert fmapi.one_line("") == ""


def test_backoff_grows_and_jitters():
    first = [fmapi.backoff(0) for _ in range(50)]
    assert all(0.125 <= d <= 0.25 for d in first) and len(set(first)) > 1
    assert all(fmapi.BACKOFF_MAX / 2 <= fmapi.backoff(10) <= fmapi.BACKOFF_MAX for _ in range(20))


# --- the helper under faults ------------------------------------------------------------


@pytest.fixture
def installed(home, workspace, logged_in, home_bin):
    make_stub(home_bin, "claude", "#!/bin/sh\necho '2.1.331 (Claude Code)'\n")
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workspace.clear_requests()
    return home / ".claude"


def helper(directory, timeout=30):
    start = time.monotonic()
    proc = subprocess.run(["/bin/sh", str(directory / "fmapi-key-helper.sh")], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    return proc, time.monotonic() - start


def test_helper_renews_through_a_burst_of_503s(workspace, installed):
    old = age_cache(installed, 60)
    workspace.fail_next("POST", CREATE, 503, headers={"Retry-After": "1"}, times=2)
    proc, _ = helper(installed)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == cache_of(installed)["token"] != old["token"]
    assert len(creates(workspace)) == 3


def test_helper_answers_within_its_budget_when_the_workspace_hangs(workspace, installed):
    age_cache(installed, 60)
    workspace.fault_next("POST", CREATE, "hang", times=100)
    proc, elapsed = helper(installed)
    assert elapsed < fmapi.HELPER_ANSWER, elapsed
    assert proc.returncode != 0 and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("  ")]
    assert len(lines) == 1 and "cannot reach" in lines[0] and "no answer" in lines[0], proc.stderr


def test_helper_hands_out_a_live_cached_token_while_the_workspace_is_down(workspace, installed):
    cached = age_cache(installed, 20 * 60)  # less than the agent's TTL (1 h) + margin, more than the margin
    workspace.fail_next("*", "/api/*", 503, times=1000)
    proc, elapsed = helper(installed)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == cached["token"] + "\n"
    assert "using the cached token meanwhile" in proc.stderr and "503" in proc.stderr
    assert elapsed < fmapi.HELPER_ANSWER


def test_helper_with_a_refused_port_and_a_live_cached_token(workspace, installed):
    cached = age_cache(installed, 20 * 60)
    workspace.stop()
    proc, elapsed = helper(installed)
    assert proc.returncode == 0 and proc.stdout == cached["token"] + "\n", proc.stderr
    assert "cannot reach" in proc.stderr
    assert elapsed < fmapi.HELPER_ANSWER


def test_helper_shows_a_proxy_page_as_one_line(workspace, installed):
    age_cache(installed, 60)
    workspace.fail_next("POST", CREATE, 502, body=PROXY_PAGE, times=1000)
    proc, elapsed = helper(installed)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "502 Bad Gateway" in proc.stderr and "<" not in proc.stderr
    assert elapsed < fmapi.HELPER_ANSWER


@pytest.mark.parametrize("status", [400, 403, 404])
def test_helper_does_not_retry_a_permanent_refusal(workspace, installed, status):
    age_cache(installed, 60)
    workspace.fail_next("POST", CREATE, status)
    proc, elapsed = helper(installed)
    assert proc.returncode != 0
    assert len(creates(workspace)) == 1 and elapsed < 3


def test_setup_shows_progress_while_it_waits_for_the_workspace(workspace, installed, logged_in):
    age_cache(installed, 60)
    workspace.fail_next("POST", CREATE, 503, headers={"Retry-After": "1"})
    proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 0, proc.stderr
    assert "503" in proc.stdout and "trying again in 1.0 s" in proc.stdout
    assert len(creates(workspace)) == 2


# --- the ledger: no live PAT that nothing records ---------------------------------------


def live_pats(workspace, prefix="Claude Code FMAPI"):
    return {p["token_value"] for p in workspace.pats_with_comment_prefix(prefix)}


def wait_for(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def start_helper(directory):
    return subprocess.Popen(["/bin/sh", str(directory / "fmapi-key-helper.sh")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def kill_group(proc):
    import os
    import signal

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_deleting_the_cache_does_not_leave_the_replaced_pat_live(workspace, installed):
    for _ in range(4):  # a user cleaning up, four times
        (installed / ".fmapi-pat-cache").unlink()
        proc, _ = helper(installed)
        assert proc.returncode == 0, proc.stderr
    current = cache_of(installed)["token"]
    assert proc.stdout.strip() == current
    assert wait_for(lambda: live_pats(workspace) == {current}), live_pats(workspace)


def test_a_pat_whose_creation_a_kill_hid_is_revoked_by_the_next_renewal(workspace, installed):
    age_cache(installed, 60)
    workspace.fault_next("POST", CREATE, "hang", delay=1.5)  # the PAT is created after the helper died
    proc = start_helper(installed)
    assert wait_for(lambda: creates(workspace))
    kill_group(proc)
    assert wait_for(lambda: len(live_pats(workspace)) == 2)  # the orphan exists, the cache does not know it
    ledger = (installed / ".fmapi-pat-ledger").read_text()
    assert '"minting"' in ledger  # ... but the ledger does

    proc, _ = helper(installed)

    assert proc.returncode == 0, proc.stderr
    current = cache_of(installed)["token"]
    assert wait_for(lambda: live_pats(workspace) == {current}), live_pats(workspace)
    assert wait_for(lambda: '"minting"' not in (installed / ".fmapi-pat-ledger").read_text())


def test_a_lost_answer_to_token_create_leaves_no_stray_pat(workspace, installed, logged_in):
    """The workspace created the PAT but the answer never came (a reset after the fact):
    setup's next run finds it by its nonce and revokes it."""
    age_cache(installed, 60)
    workspace.fault_next("POST", CREATE, "hang", delay=fmapi.HELPER_DEADLINE + 1, times=100)
    proc, _ = helper(installed)
    assert proc.returncode != 0 and "no answer" in proc.stderr
    assert wait_for(lambda: len(live_pats(workspace)) >= 2, timeout=fmapi.HELPER_DEADLINE + 5)
    workspace._failures.clear()
    setup = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in)
    assert setup.returncode == 0, setup.stderr
    assert live_pats(workspace) == {cache_of(installed)["token"]}


def test_a_helper_killed_holding_the_lock_does_not_block_the_next(workspace, installed):
    age_cache(installed, 60)
    workspace.fault_next("POST", CREATE, "hang", times=1)  # the first helper hangs inside the lock
    first = start_helper(installed)
    assert wait_for(lambda: creates(workspace))
    kill_group(first)
    start = time.monotonic()
    proc, _ = helper(installed)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 3  # no waiting for a lock nobody holds
    assert proc.stdout.strip() == cache_of(installed)["token"]


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(workspace, installed):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = installed / ("..fmapi-pat-cache.%s.abc123.fmapi-tmp" % dead.stdout.strip())
    leftover.write_text('{"token": "half')
    alive = installed / ("..fmapi-pat-cache.%d.def456.fmapi-tmp" % subprocess.os.getpid())
    alive.write_text("another writer's, still running")
    age_cache(installed, 60)
    proc, _ = helper(installed)
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists() and alive.exists(), proc.stderr


# --- a token that died in the workspace ---------------------------------------------------

SCIM_ME = "/api/2.0/preview/scim/v2/Me"


def bearers(workspace, path, method=None):
    return [r["headers"].get("authorization", "")[7:] for r in workspace.requests_to(path, method)]


def test_a_first_hand_out_costs_no_request_and_no_process(workspace, installed, tmp_path):
    from conftest import databricks_calls

    calls = len(databricks_calls(tmp_path))
    proc, _ = helper(installed)
    assert proc.returncode == 0 and proc.stdout.strip() == cache_of(installed)["token"]
    assert workspace.requests == [] and len(databricks_calls(tmp_path)) == calls


@pytest.mark.parametrize("death", ["revoke_pat", "expire_pat"])
def test_a_pat_that_died_in_the_workspace_is_replaced_when_asked_for_again(workspace, installed, death):
    old = cache_of(installed)
    first, _ = helper(installed)  # the agent starts with the cached PAT ...
    assert first.stdout.strip() == old["token"]
    getattr(workspace, death)(old["token"])  # ... which an admin revoked (or which expired there)
    workspace.clear_requests()

    again, _ = helper(installed)  # the agent's request was refused: it asks again at once

    new = cache_of(installed)
    assert again.returncode == 0 and again.stdout.strip() == new["token"] != old["token"], again.stderr
    assert "refuses the cached token" in again.stderr
    assert bearers(workspace, SCIM_ME) == [old["token"]]  # one cheap read-only check, with that PAT
    assert len(creates(workspace)) == 1
    assert wait_for(lambda: live_pats(workspace) == {new["token"]})
    # revoked best-effort like any replaced PAT (its id already gone there counts as revoked)
    assert wait_for(lambda: old["token_id"] not in (installed / ".fmapi-pat-ledger").read_text())


def test_a_spurious_refusal_of_a_live_pat_leaves_no_live_pat_unrecorded(workspace, installed):
    old = cache_of(installed)
    helper(installed)
    workspace.fail_next("GET", SCIM_ME, 401)  # an auth blip or a proxy's 401: the PAT is still live
    again, _ = helper(installed)
    new = cache_of(installed)
    assert again.returncode == 0 and again.stdout.strip() == new["token"] != old["token"], again.stderr
    # the replaced PAT is revoked, not just forgotten: no live PAT that nothing records
    assert wait_for(lambda: live_pats(workspace) == {new["token"]})
    assert wait_for(lambda: old["token_id"] not in (installed / ".fmapi-pat-ledger").read_text())


def test_a_refused_pat_that_cannot_be_replaced_is_handed_out_while_it_has_time(workspace, installed):
    old = cache_of(installed)
    helper(installed)
    workspace.fail_next("GET", SCIM_ME, 401)
    workspace.fault_next("POST", "/api/2.0/token/create", "hang", times=10, delay=30)
    proc, elapsed = helper(installed)
    assert proc.returncode == 0 and proc.stdout.strip() == old["token"], proc.stderr
    assert "using the cached token meanwhile" in proc.stderr
    assert elapsed < fmapi.HELPER_ANSWER
    # whatever the hung token/create may still make stays recorded in the ledger
    assert (installed / ".fmapi-pat-ledger").exists()


def test_a_live_pat_asked_for_again_costs_one_check_per_interval_and_no_mint(workspace, installed, tmp_path):
    from conftest import databricks_calls

    token = cache_of(installed)["token"]
    calls = len(databricks_calls(tmp_path))
    for _ in range(6):  # a burst of agent starts, or an agent asking before every request
        proc, _ = helper(installed)
        assert proc.returncode == 0 and proc.stdout.strip() == token and proc.stderr == ""
    assert bearers(workspace, SCIM_ME) == [token]
    assert not workspace.requests_to("/api/2.0/token/")
    assert len(databricks_calls(tmp_path)) == calls  # never a CLI process for a live token


def test_a_check_without_an_answer_hands_out_the_cached_token(workspace, installed):
    token = cache_of(installed)["token"]
    helper(installed)
    workspace.fault_next("GET", SCIM_ME, "hang", times=100)
    proc, elapsed = helper(installed)
    assert proc.returncode == 0 and proc.stdout.strip() == token
    assert elapsed < fmapi.CHECK_DEADLINE + 1.5


def test_a_refused_pat_is_still_handed_out_with_the_reason_when_it_cannot_be_replaced(workspace, installed, home):
    from conftest import expire_cli_session

    old = cache_of(installed)
    helper(installed)
    workspace.revoke_pat(old["token"])
    expire_cli_session(home, workspace)
    proc, _ = helper(installed)  # a check's 401 is no proof: the cached PAT is within its expiry margin
    assert proc.returncode == 0 and proc.stdout.strip() == old["token"]
    assert "databricks auth login" in proc.stderr and "fmapi reauth" in proc.stderr


def test_concurrent_re_asks_for_a_dead_pat_mint_one(workspace, installed):
    old = cache_of(installed)
    helper(installed)
    workspace.revoke_pat(old["token"])
    workspace.clear_requests()
    procs = [start_helper(installed) for _ in range(8)]
    outs = [p.communicate(timeout=30)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    new = cache_of(installed)["token"]
    assert set(outs) <= {old["token"], new}  # those that did not check got the cached one, as before
    assert len(creates(workspace)) == 1 and len(bearers(workspace, SCIM_ME)) == 1
    proc, _ = helper(installed)
    assert proc.stdout.strip() == new
