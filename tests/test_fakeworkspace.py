"""Tests of the test fakes themselves (FakeWorkspace and tests/fakebin/databricks).

They also document how the fakes behave; see tests/fakeworkspace.py and the fake CLI's docstring.
"""

from __future__ import annotations

import datetime
import gzip
import http.client
import json
import os
import re
import stat
import time
import urllib.parse

import pytest

from conftest import (PROFILE, cli_token_cache, databricks_calls, expire_cli_session, make_stub,
                      run_databricks)
from fakeworkspace import CODEX_BASE_PATH, FakeWorkspace, parse_sse

RFC3339_9 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.(\d{9})([+-]\d{2}:\d{2})$")


def call(ws, method, path, body=None, token=None, headers=None, form=None, raw=None):
    """Return (status, headers, parsed JSON or text)."""
    u = urllib.parse.urlsplit(ws.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    hdrs = dict(headers or {})
    data = raw
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = "Bearer " + token
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    try:
        payload = json.loads(text)
    except ValueError:
        payload = text
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload


@pytest.fixture
def oauth(workspace):
    access, _ = workspace.issue_oauth()
    return access


# ------------------------------------------------------------------ REST
def test_token_round_trip(workspace, oauth):
    st, _, body = call(workspace, "GET", "/api/2.0/token/list", token=oauth)
    assert (st, body) == (200, {})  # no token_infos key when there are none

    st, _, created = call(workspace, "POST", "/api/2.0/token/create",
                          {"comment": "fmapi: test", "lifetime_seconds": 3600}, token=oauth)
    assert st == 200
    assert re.fullmatch(r"dapi[0-9a-f]{32}", created["token_value"])
    info = created["token_info"]
    assert set(info) == {"token_id", "creation_time", "expiry_time", "comment"}
    assert info["expiry_time"] - info["creation_time"] == 3600 * 1000
    assert info["comment"] == "fmapi: test"
    assert workspace.tokens[info["token_id"]]["created_by_bearer"] == oauth
    assert created["token_value"] in workspace.pat_values()

    st, _, listed = call(workspace, "GET", "/api/2.0/token/list", token=oauth)
    assert listed == {"token_infos": [info]}
    assert [t["token_id"] for t in workspace.pats_with_comment_prefix("fmapi")] == \
        [info["token_id"]]

    # the PAT itself authenticates REST calls too
    st, _, _ = call(workspace, "GET", "/api/2.0/token/list", token=created["token_value"])
    assert st == 200

    st, _, body = call(workspace, "POST", "/api/2.0/token/delete",
                       {"token_id": info["token_id"]}, token=oauth)
    assert (st, body) == (200, {})
    st, _, body = call(workspace, "POST", "/api/2.0/token/delete",
                       {"token_id": info["token_id"]}, token=oauth)
    assert st == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert workspace.pat_values() == set()


def test_token_lifetime_rules(workspace, oauth):
    st, _, body = call(workspace, "POST", "/api/2.0/token/create", {"comment": "x"}, token=oauth)
    assert st == 200 and body["token_info"]["expiry_time"] == -1
    workspace.max_token_lifetime_days = 1
    st, _, body = call(workspace, "POST", "/api/2.0/token/create",
                       {"comment": "x", "lifetime_seconds": 2 * 86400}, token=oauth)
    assert st == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    st, _, body = call(workspace, "GET",
                       "/api/2.0/workspace-conf?keys=maxTokenLifetimeDays,enableTokensConfig",
                       token=oauth)
    assert body == {"maxTokenLifetimeDays": "1", "enableTokensConfig": "true"}


def test_rest_auth_errors(workspace, oauth):
    st, _, body = call(workspace, "GET", "/api/2.0/token/list")
    assert st == 401 and body["error_code"] == "UNAUTHENTICATED"
    pat = workspace.add_pat("other install", lifetime_seconds=600)
    assert pat["token_value"].startswith("dapi") and not oauth.startswith("dapi")
    assert call(workspace, "GET", "/api/2.0/token/list", token=pat["token_value"])[0] == 200
    workspace.revoke_pat(pat["token_id"])
    st, _, body = call(workspace, "GET", "/api/2.0/token/list", token=pat["token_value"])
    assert (st, body) == (403, {"error_code": "403", "message": "Invalid access token."})
    expired = workspace.add_pat("old", lifetime_seconds=600)
    workspace.expire_pat(expired["token_id"])
    assert call(workspace, "GET", "/api/2.0/token/list", token=expired["token_value"])[0] == 403
    assert expired["token_value"] not in workspace.pat_values()
    workspace.expire_session()
    assert call(workspace, "GET", "/api/2.0/token/list", token=oauth)[0] == 403


def test_serving_endpoints_and_errors(workspace, oauth):
    st, _, body = call(workspace, "GET", "/api/2.0/serving-endpoints", token=oauth)
    names = {e["name"]: e for e in body["endpoints"]}
    assert names["databricks-claude-sonnet-4-6"]["state"]["ready"] == "READY"
    assert names["databricks-gte-large-en"]["task"] == "llm/v1/embeddings"
    assert any(e["state"]["ready"] == "NOT_READY" for e in body["endpoints"])
    st, _, ep = call(workspace, "GET", "/api/2.0/serving-endpoints/databricks-gpt-5-2",
                     token=oauth)
    assert st == 200 and ep["config"]["served_entities"][0]["foundation_model"]
    st, _, body = call(workspace, "GET", "/api/2.0/serving-endpoints/nope", token=oauth)
    assert st == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    st, _, body = call(workspace, "GET", "/api/2.0/nothing-here", token=oauth)
    assert st == 404 and body["error_code"] == "ENDPOINT_NOT_FOUND"
    st, _, body = call(workspace, "POST", "/api/2.0/token/create", raw=b"{not json",
                       token=oauth, headers={"Content-Type": "application/json"})
    assert st == 400 and body["error_code"] == "MALFORMED_REQUEST"

    workspace.fail_next("GET", "/api/2.0/serving-endpoints", 503, "<html>busy</html>")
    st, hdrs, body = call(workspace, "GET", "/api/2.0/serving-endpoints", token=oauth)
    assert st == 503 and body == "<html>busy</html>" and hdrs["content-type"].startswith("text/html")
    assert call(workspace, "GET", "/api/2.0/serving-endpoints", token=oauth)[0] == 200


def test_oidc(workspace):
    st, _, disc = call(workspace, "GET", "/oidc/.well-known/oauth-authorization-server")
    assert disc["token_endpoint"] == workspace.url + "/oidc/v1/token"
    st, _, tok = call(workspace, "POST", "/oidc/v1/token",
                      form={"grant_type": "authorization_code", "code": "c",
                            "client_id": "databricks-cli"})
    assert st == 200 and tok["token_type"] == "Bearer" and tok["expires_in"] == 3600
    st, _, tok2 = call(workspace, "POST", "/oidc/v1/token",
                       form={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                             "client_id": "databricks-cli"})
    assert st == 200 and tok2["access_token"] != tok["access_token"]
    workspace.expire_session()
    st, _, body = call(workspace, "POST", "/oidc/v1/token",
                       form={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                             "client_id": "databricks-cli"})
    assert (st, body) == (401, {"error": "invalid_request",
                                "error_description": "Refresh token is invalid"})
    workspace.oauth_login_allowed = False
    st, _, _ = call(workspace, "POST", "/oidc/v1/token",
                    form={"grant_type": "authorization_code", "code": "c"})
    assert st == 400


# ------------------------------------------------------------------ model traffic
def test_model_traffic_requires_credentials(workspace):
    for path in ("/serving-endpoints/anthropic/v1/messages",
                 CODEX_BASE_PATH + "/responses",
                 "/serving-endpoints/gemini/v1beta/models/databricks-gemini-3-pro:generateContent"):
        st, _, body = call(workspace, "POST", path, {"model": "databricks-claude-sonnet-4-6"},
                           token="not-a-pat")
        assert (st, body) == (401, {"error_code": 401, "message": "Credential was not sent or "
                                    "was of an unsupported type for this API."}), path
        st, _, body = call(workspace, "POST", path, {"model": "databricks-claude-sonnet-4-6"},
                           token="dapi" + "0" * 32)  # a PAT the workspace does not accept (revoked, expired)
        assert (st, body) == (403, {"error_code": 403, "message": "Invalid access token."}), path
    assert call(workspace, "POST", "/serving-endpoints/anthropic/v1/messages", {})[0] == 401


def test_anthropic_stream(workspace, oauth):
    pat = workspace.add_pat("fmapi")["token_value"]
    st, hdrs, body = call(
        workspace, "POST", "/serving-endpoints/anthropic/v1/messages?beta=true",
        {"model": "databricks-claude-sonnet-4-6", "stream": True, "max_tokens": 10,
         "messages": [{"role": "user", "content": "say hi"}]},
        token=pat, headers={"x-databricks-use-coding-agent-mode": "true"})
    assert st == 200 and hdrs["content-type"] == "text/event-stream"
    events = parse_sse(body)
    assert [e for e, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert all(d["type"] == e for e, d in events)
    assert events[0][1]["message"]["model"] == "databricks-claude-sonnet-4-6"
    text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
    assert text == workspace.reply_text
    assert events[5][1]["delta"]["stop_reason"] == "end_turn"
    (req,) = workspace.requests_to("/serving-endpoints/anthropic/v1/messages")
    assert req["query"] == {"beta": "true"}
    assert req["headers"]["authorization"] == "Bearer " + pat
    assert req["headers"]["x-databricks-use-coding-agent-mode"] == "true"
    assert req["json"]["stream"] is True

    st, _, msg = call(workspace, "POST", "/serving-endpoints/anthropic/v1/messages",
                      {"model": "databricks-claude-haiku-4-5",
                       "messages": [{"role": "user", "content": "hi"}]}, token=oauth)
    assert msg["content"] == [{"type": "text", "text": workspace.reply_text}]
    st, _, body = call(workspace, "POST", "/serving-endpoints/anthropic/v1/messages",
                       {"model": "claude-3-nope", "messages": []}, token=oauth)
    assert st == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert call(workspace, "HEAD", "/serving-endpoints/anthropic/api/hello")[0] == 200


def test_responses_stream(workspace, oauth):
    workspace.reply_text = "pong"
    st, hdrs, body = call(workspace, "POST", CODEX_BASE_PATH + "/responses",
                          {"model": "databricks-gpt-5-2-codex", "stream": True,
                           "input": [{"role": "user", "content": "ping"}]}, token=oauth)
    assert st == 200 and hdrs["content-type"] == "text/event-stream"
    events = parse_sse(body)
    names = [e for e, _ in events]
    assert names == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert all(d["type"] == e for e, d in events)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["model"] == "databricks-gpt-5-2-codex"
    assert done["output"][0]["content"][0]["text"] == "pong"
    assert done["usage"]["total_tokens"] == \
        done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    st, _, models = call(workspace, "GET", CODEX_BASE_PATH + "/models?client_version=0.169.0",
                         token=oauth)
    assert (st, models) == (200, {"models": []})
    # the alternative base path answers the same way
    st, _, _ = call(workspace, "POST", "/serving-endpoints/openai/v1/responses",
                    {"model": "databricks-gpt-5-2", "stream": True, "input": "x"}, token=oauth)
    assert st == 200


def test_gemini_stream(workspace, oauth):
    req = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    for prefix in ("/serving-endpoints/gemini", "/ai-gateway/gemini"):
        st, hdrs, body = call(workspace, "POST", prefix + "/v1beta/models/"
                              "databricks-gemini-3-pro:streamGenerateContent?alt=sse", req,
                              token=oauth)
        assert st == 200 and hdrs["content-type"] == "text/event-stream"
        ((name, data),) = parse_sse(body)
        assert name is None
        cand = data["candidates"][0]
        assert cand["content"] == {"role": "model", "parts": [{"text": workspace.reply_text}]}
        assert cand["finishReason"] == "STOP" and data["modelVersion"] == "databricks-gemini-3-pro"
    st, _, plain = call(workspace, "POST", "/serving-endpoints/gemini/v1beta/models/"
                        "databricks-gemini-3-pro:generateContent", req, token=oauth)
    assert plain == data


def test_chat_completions_stream(workspace, oauth):
    """OpenAI chat completions (OpenCode's openai-compatible SDK, Copilot's completions wire API)."""
    req = {"model": "databricks-claude-sonnet-4-6", "stream": True, "stream_options": {"include_usage": True},
           "messages": [{"role": "user", "content": "hi"}]}
    st, hdrs, body = call(workspace, "POST", "/serving-endpoints/chat/completions", req, token=oauth)
    assert st == 200 and hdrs["content-type"] == "text/event-stream"
    events = parse_sse(body)
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == req["model"] for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == workspace.reply_text
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    req.pop("stream_options")
    assert "usage" not in parse_sse(call(workspace, "POST", "/serving-endpoints/chat/completions", req, token=oauth)[2])[-2][1]


def test_body_limits_and_gzip(workspace, oauth):
    big = b"{" + b" " * (6 * 1024 * 1024) + b"}"
    st, _, body = call(workspace, "POST", "/api/2.0/token/create", raw=big, token=oauth)
    assert st == 400 and body["error_code"] == "MALFORMED_REQUEST"
    st, _, body = call(workspace, "POST", "/api/2.0/token/create",
                       raw=gzip.compress(b'{"comment": "gz"}'), token=oauth,
                       headers={"Content-Encoding": "gzip"})
    assert st == 200 and body["token_info"]["comment"] == "gz"


def test_latency_and_context_manager():
    with FakeWorkspace(latency=0.05) as ws:
        t0 = time.monotonic()
        call(ws, "GET", "/oidc/.well-known/oauth-authorization-server")
        assert time.monotonic() - t0 >= 0.05
        assert len(ws.requests) == 1
        ws.clear_requests()
        assert ws.requests == []


# ------------------------------------------------------------------ fake CLI
def test_cli_login_and_token(workspace, logged_in, home, tmp_path):
    assert logged_in == PROFILE
    cfg = (home / ".databrickscfg").read_text()
    assert "[fake-profile]" in cfg and workspace.url in cfg and "databricks-cli" in cfg
    assert stat.S_IMODE((home / ".databrickscfg").stat().st_mode) == 0o600
    assert stat.S_IMODE(cli_token_cache(home).stat().st_mode) == 0o600

    r = run_databricks("auth", "token", "--profile", PROFILE, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('{\n  "access_token": ')
    out = json.loads(r.stdout)
    assert set(out) == {"access_token", "token_type", "expiry"}
    assert out["token_type"] == "Bearer" and not out["access_token"].startswith("dapi")
    m = RFC3339_9.match(out["expiry"])
    assert m, out["expiry"]
    expiry = datetime.datetime.strptime(out["expiry"][:26] + out["expiry"][29:],
                                        "%Y-%m-%dT%H:%M:%S.%f%z")
    left = expiry.timestamp() - time.time()
    assert 3500 < left <= 3600
    assert workspace.credential_kind(out["access_token"]) == "oauth"

    # cached: same token, no refresh; --force-refresh mints a new one
    again = json.loads(run_databricks("auth", "token", "--profile", PROFILE).stdout)
    assert again["access_token"] == out["access_token"]
    forced = json.loads(run_databricks("auth", "token", "--profile", PROFILE,
                                       "--force-refresh").stdout)
    assert forced["access_token"] != out["access_token"]

    calls = databricks_calls(tmp_path)
    assert calls[0][:2] == ["auth", "login"] and len(calls) == 4
    assert not any(out["access_token"] in a for argv in calls for a in argv)


def test_cli_expired_session_and_missing_profile(workspace, logged_in, home):
    expire_cli_session(home, workspace)
    r = run_databricks("auth", "token", "--profile", PROFILE, "-o", "json")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("Error: a new access token could not be retrieved because the "
                               "refresh token is invalid.")
    assert "databricks auth login --profile fake-profile" in r.stderr

    r = run_databricks("auth", "token", "--profile", "nope")
    assert r.returncode == 1
    assert r.stderr.startswith("Error: resolve: ") and "has no nope profile configured" in r.stderr

    r = run_databricks("auth", "token", "--host", "http://127.0.0.1:9")
    assert r.returncode == 1
    assert "databricks OAuth is not configured for this host" in r.stderr

    # signing in again repairs it
    assert run_databricks("auth", "login", "--profile", PROFILE).returncode == 0
    assert run_databricks("auth", "token", "--profile", PROFILE).returncode == 0


def test_cli_without_config(home):
    r = run_databricks("auth", "token", "--profile", "x")
    assert r.returncode == 1 and r.stderr.startswith("Error: cannot load Databricks config file")
    r = run_databricks("frobnicate")
    assert r.returncode == 1 and r.stderr.startswith('Error: unknown command "frobnicate"')
    r = run_databricks("--version")
    assert r.stdout.strip() == "Databricks CLI v0.296.0"


def test_cli_login_failures(workspace, home):
    r = run_databricks("auth", "login", "--host", workspace.url, "--profile", "p",
                       env={"FAKE_DATABRICKS_LOGIN_FAIL": "1"})
    assert r.returncode == 1 and r.stderr.startswith("Error: ")
    workspace.oauth_login_allowed = False
    r = run_databricks("auth", "login", "--host", workspace.url, "--profile", "p")
    assert r.returncode == 1 and r.stderr.startswith("Error: ")
    assert not (home / ".databrickscfg").exists()


def test_cli_tokens_and_profiles(workspace, logged_in, home):
    (home / ".databrickscfg").write_text(
        "[__settings__]\ndefault_profile = fake-profile\n\n"
        + (home / ".databrickscfg").read_text())
    r = run_databricks("tokens", "create", "--comment", "fmapi: cli", "--lifetime-seconds",
                       "600", "-o", "json", "--profile", PROFILE)
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    tid = created["token_info"]["token_id"]
    assert created["token_value"] in workspace.pat_values()

    r = run_databricks("tokens", "list", "-o", "json", "--profile", PROFILE)
    assert [t["token_id"] for t in json.loads(r.stdout)] == [tid]

    r = run_databricks("tokens", "delete", tid, "--profile", PROFILE)
    assert (r.returncode, r.stdout) == (0, "")
    assert json.loads(run_databricks("tokens", "list", "-o", "json", "-p", PROFILE).stdout) == []
    r = run_databricks("tokens", "delete", tid, "--profile", PROFILE)
    assert r.returncode == 1 and r.stderr == "Error: Token with id '%s' does not exist.\n" % tid

    r = run_databricks("auth", "profiles", "-o", "json")
    assert json.loads(r.stdout) == {"profiles": [{
        "name": PROFILE, "host": workspace.url, "cloud": "aws", "auth_type": "databricks-cli",
        "valid": True}]}
    expire_cli_session(home, workspace)
    assert json.loads(run_databricks("auth", "profiles", "-o", "json").stdout)[
        "profiles"][0]["valid"] is False


def test_make_stub(home_bin, home):
    make_stub(home_bin, "claude", 'echo "claude 9.9.9"\n')
    import subprocess

    r = subprocess.run(["claude"], capture_output=True, text=True, env=dict(os.environ))
    assert r.stdout == "claude 9.9.9\n"


def test_streaming_like_the_real_service(workspace, oauth):
    """stream_chunked: SSE goes out chunked, a Gemini stream in one frame per piece of text."""
    import threading

    req = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    workspace.stream_chunked = True
    st, hdrs, body = call(workspace, "POST", "/serving-endpoints/gemini/v1beta/models/"
                          "databricks-gemini-3-pro:streamGenerateContent?alt=sse", req, token=oauth)
    assert st == 200 and hdrs["transfer-encoding"] == "chunked" and "content-length" not in hdrs
    frames = [data for _, data in parse_sse(body)]
    assert len(frames) == 2 and workspace.streams_finished == 1
    assert "".join(f["candidates"][0]["content"]["parts"][0]["text"] for f in frames) == workspace.reply_text
    assert "finishReason" not in frames[0]["candidates"][0] and frames[1]["candidates"][0]["finishReason"] == "STOP"
    # the gate holds a stream after its first frame
    workspace.stream_gate = gate = threading.Event()
    u = urllib.parse.urlsplit(workspace.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    conn.request("POST", "/serving-endpoints/anthropic/v1/messages", body=json.dumps(
        {"model": "databricks-claude-sonnet-4-6", "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
        headers={"Authorization": "Bearer " + oauth, "Content-Type": "application/json"})
    resp = conn.getresponse()
    first = resp.read1(65536)
    assert first.startswith(b"event: message_start\n") and workspace.streams_finished == 1
    gate.set()
    assert parse_sse(first + resp.read())[-1][0] == "message_stop" and workspace.streams_finished == 2


def test_scripted_gemini_answers(workspace, oauth):
    call_ = {"functionCall": {"name": "list_directory", "args": {"dir_path": "."}}}
    workspace.gemini_replies = [{"parts": [call_], "delay": 0.2}]
    req = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    path = "/serving-endpoints/gemini/v1beta/models/databricks-gemini-3-pro:generateContent"
    started = time.time()
    st, _, body = call(workspace, "POST", path, req, token=oauth)
    assert st == 200 and time.time() - started >= 0.2
    assert body["candidates"][0]["content"]["parts"] == [call_]
    st, _, body = call(workspace, "POST", path, req, token=oauth)
    assert body["candidates"][0]["content"]["parts"] == [{"text": workspace.reply_text}]
