"""The relay (fmapi.py section 7b): a loopback forwarder that re-signs every request with a fresh
bearer, for agents that read their key once. Driven over real sockets against the fake workspace,
with a token source the test controls; the launcher part with real child processes."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import fmapi
from conftest import FMAPI, age_cache, expire_cli_session
from fakeworkspace import FakeWorkspace, parse_sse

GEMINI = "/serving-endpoints/gemini"
STREAM = "/v1beta/models/databricks-gemini-2-5-pro:streamGenerateContent?alt=sse"
GENERATE = "/v1beta/models/databricks-gemini-2-5-pro:generateContent"
PROMPT = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


class Tokens:
    """A token source: a new OAuth access token of the fake workspace on every call (or what ``plan`` says)."""

    def __init__(self, workspace, plan=None):
        self.workspace = workspace
        self.plan = list(plan or [])
        self.given = []

    def __call__(self):
        step = self.plan.pop(0) if self.plan else None
        if isinstance(step, BaseException):
            raise step
        token = step if isinstance(step, str) else self.workspace.issue_oauth()[0]
        self.given.append(token)
        return token


@pytest.fixture
def tokens(workspace):
    return Tokens(workspace)


@pytest.fixture
def relay(workspace, tokens):
    with fmapi.Relay(workspace.url + GEMINI, tokens, headers=[fmapi.CODING_AGENT_HEADER]) as r:
        yield r


def send(relay, method, path, body=None, headers=None, key="bearer", conn=None):
    """One request to the relay; returns (status, headers dict, body bytes). ``key``: how the launch key is sent."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", relay.port, timeout=20)
    hdrs = dict(headers or {})
    if key == "bearer":
        hdrs["Authorization"] = "Bearer " + relay.key
    elif key == "x-goog-api-key":
        hdrs["x-goog-api-key"] = relay.key
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def model_calls(workspace):
    return workspace.requests_to(GEMINI + "/", "POST")


# ------------------------------------------------------------------ forwarding
def test_each_request_goes_to_the_workspace_with_a_fresh_bearer(workspace, relay, tokens):
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=20)  # one keep-alive connection, as gemini
    status, headers, body = send(relay, "POST", STREAM, PROMPT, conn=conn, headers={
        "x-goog-api-key": relay.key, "User-Agent": "GeminiCLI/0.61.0", "X-Custom": "kept",
        "x-databricks-use-coding-agent-mode": "false", "Connection": "keep-alive, X-Hop", "X-Hop": "1",
        "Proxy-Authorization": "Basic c2VjcmV0"})
    assert status == 200 and headers["content-type"] == "text/event-stream"
    ((_, frame),) = parse_sse(body)
    assert frame["candidates"][0]["content"]["parts"] == [{"text": workspace.reply_text}]
    status, _, body = send(relay, "POST", GENERATE, PROMPT, conn=conn)
    assert status == 200 and json.loads(body)["candidates"][0]["finishReason"] == "STOP"

    first, second = model_calls(workspace)
    assert first["path"] == GEMINI + STREAM.split("?")[0] and first["query"] == {"alt": "sse"}
    assert second["path"] == GEMINI + GENERATE
    assert [r["headers"]["authorization"] for r in (first, second)] == ["Bearer " + t for t in tokens.given]
    assert tokens.given[0] != tokens.given[1]
    for request in (first, second):
        assert request["headers"]["x-databricks-use-coding-agent-mode"] == "true"
        assert "x-goog-api-key" not in request["headers"]
        assert relay.key not in json.dumps(request["headers"])
    assert first["headers"]["user-agent"] == "GeminiCLI/0.61.0" and first["headers"]["x-custom"] == "kept"
    assert not {"x-hop", "proxy-authorization"} & set(first["headers"])
    assert first["json"] == PROMPT


def test_a_token_renewed_between_two_requests_is_used(workspace, tokens):
    short, _ = workspace.issue_oauth(lifetime=1)
    tokens.plan = [short]  # then fresh ones
    with fmapi.Relay(workspace.url + GEMINI, tokens) as relay:
        assert send(relay, "POST", STREAM, PROMPT)[0] == 200
        time.sleep(1.2)
        assert workspace.credential_kind(short) is None  # the first token has expired
        assert send(relay, "POST", STREAM, PROMPT)[0] == 200
    bearers = [r["headers"]["authorization"] for r in model_calls(workspace)]
    assert bearers == ["Bearer " + short, "Bearer " + tokens.given[1]]


def test_request_bodies_arrive_whole_chunked_or_not(workspace, relay):
    big = {"contents": [{"role": "user", "parts": [{"text": "x" * 300000}]}]}
    assert send(relay, "POST", GENERATE, big)[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=20)
    conn.request("POST", GENERATE, body=iter([json.dumps(PROMPT)[:10].encode(), json.dumps(PROMPT)[10:].encode()]),
                 headers={"Authorization": "Bearer " + relay.key, "Content-Type": "application/json"},
                 encode_chunked=True)
    assert conn.getresponse().status == 200
    assert [r["json"] for r in model_calls(workspace)] == [big, PROMPT]


# ------------------------------------------------------------------ who may use it
@pytest.mark.parametrize("how", ["bearer", "x-goog-api-key"])
def test_the_launch_key_is_accepted_as_gemini_sends_it(workspace, relay, how):
    # GEMINI_API_KEY_AUTH_MECHANISM=bearer: Authorization: Bearer; the default: x-goog-api-key
    assert send(relay, "POST", GENERATE, PROMPT, key=how)[0] == 200


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"x-goog-api-key": "wrong"},
    {"Authorization": "Basic KEY"},
    {"Authorization": "Bearer KEYx"},
])
def test_requests_without_the_launch_key_are_refused(workspace, relay, tokens, headers):
    headers = {k: v.replace("KEY", relay.key) for k, v in headers.items()}
    status, hdrs, body = send(relay, "POST", GENERATE, PROMPT, headers=headers, key=None)
    assert status == 401 and hdrs["content-type"] == "application/json"
    assert json.loads(body)["error_code"] == "UNAUTHENTICATED"
    assert model_calls(workspace) == [] and tokens.given == []  # nothing reached the workspace


def test_it_listens_on_127_0_0_1_only(workspace, relay):
    assert relay.url == "http://127.0.0.1:%d" % relay.port
    assert relay._server.socket.getsockname()[0] == "127.0.0.1"
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        own = probe.getsockname()[0]
    except OSError:
        own = None
    finally:
        probe.close()
    if own and not own.startswith("127."):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((own, relay.port), timeout=5)
    assert relay._server.verify_request(None, ("192.0.2.7", 40000)) is False
    assert relay._server.verify_request(None, ("127.0.0.1", 40000)) is True


def test_a_request_for_another_host_name_is_refused(workspace, relay):
    # a web page that rebinds its own name to 127.0.0.1 still names itself in Host
    status, _, body = send(relay, "POST", GENERATE, PROMPT, headers={"Host": "evil.example:%d" % relay.port})
    assert status == 403 and model_calls(workspace) == []
    assert send(relay, "POST", GENERATE, PROMPT, headers={"Host": "localhost:%d" % relay.port})[0] == 200


def test_it_is_not_a_proxy(workspace, relay):
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=20)
    conn.request("GET", "http://example.com/", headers={"Authorization": "Bearer " + relay.key})
    assert conn.getresponse().status == 400
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=20)
    conn.request("CONNECT", "example.com:443", headers={"Authorization": "Bearer " + relay.key})
    assert conn.getresponse().status == 501
    assert model_calls(workspace) == []


# ------------------------------------------------------------------ answers
def test_a_streamed_answer_arrives_while_the_workspace_is_still_sending(workspace, relay):
    workspace.stream_chunked = True
    workspace.stream_gate = gate = threading.Event()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
        conn.request("POST", STREAM, body=json.dumps(PROMPT),
                     headers={"Authorization": "Bearer " + relay.key, "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
        received = b""
        while b"\n\n" not in received:
            piece = resp.read1(65536)
            assert piece, "the stream ended before its first frame"
            received += piece
        assert workspace.streams_finished == 0 and not gate.is_set()  # the workspace has not finished
        (_, first), = parse_sse(received)
        assert "finishReason" not in first["candidates"][0]
        gate.set()
        received += resp.read()
    finally:
        gate.set()
    frames = [data for _, data in parse_sse(received)]
    assert len(frames) >= 2 and workspace.streams_finished == 1
    assert "".join(f["candidates"][0]["content"]["parts"][0]["text"] for f in frames) == workspace.reply_text
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("status,body,headers", [
    (429, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Exceeded workspace rate limit."}, {"Retry-After": "7"}),
    (500, "<html><body>Internal error</body></html>", {}),
    (503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "The service is overloaded."}, {}),
    (400, {"error_code": "BAD_REQUEST", "message": "Invalid JSON."}, {}),
])
def test_workspace_errors_pass_through_unchanged(workspace, relay, status, body, headers):
    workspace.fail_next("POST", GEMINI + STREAM.split("?")[0], status, body, headers=headers)
    got, hdrs, raw = send(relay, "POST", STREAM, PROMPT)
    assert got == status
    assert raw == (json.dumps(body) if isinstance(body, dict) else body).encode()
    for name, value in headers.items():
        assert hdrs[name.lower()] == value


def test_the_workspace_refusing_the_bearer_reaches_the_agent(workspace, tokens):
    tokens.plan = ["not-a-token"]
    with fmapi.Relay(workspace.url + GEMINI, tokens) as relay:
        status, _, body = send(relay, "POST", GENERATE, PROMPT)
        assert status == 401 and json.loads(body)["message"].startswith("Credential was not sent")
        status, _, body = send(relay, "POST", GENERATE + "x", PROMPT)  # an unknown route: the workspace's 404
        assert status == 404 and json.loads(body)["error_code"] == "ENDPOINT_NOT_FOUND"


def test_an_unreachable_workspace_answers_502(tokens):
    gone = FakeWorkspace().start()
    gone.stop()  # its port now refuses connections
    with fmapi.Relay(gone.url + GEMINI, tokens) as relay:
        status, headers, body = send(relay, "POST", GENERATE, PROMPT)
    answer = json.loads(body)
    assert status == 502 and headers["content-type"] == "application/json"
    assert answer["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert gone.url in answer["message"] and "refused" in answer["message"].lower()
    assert tokens.given and tokens.given[0] not in body.decode()
    assert len(body) < 300


def test_token_failures_answer_with_fmapis_reason(workspace, tokens):
    tokens.plan = [fmapi.SessionExpired(workspace.url, "fake-profile"),
                   fmapi.FmapiError("`databricks auth token` did not answer within 2 minutes.", fix="Check your network."),
                   RuntimeError("boom")]
    with fmapi.Relay(workspace.url + GEMINI, tokens) as relay:
        status, _, body = send(relay, "POST", GENERATE, PROMPT)
        assert status == 401 and "databricks auth login --host %s --profile fake-profile" % workspace.url in json.loads(body)["message"]
        status, _, body = send(relay, "POST", GENERATE, PROMPT)
        assert status == 502 and "did not answer" in json.loads(body)["message"]
        status, _, body = send(relay, "POST", GENERATE, PROMPT)
        assert status == 502 and "could not get a Databricks token" in json.loads(body)["message"]
        assert send(relay, "POST", GENERATE, PROMPT)[0] == 200  # and it recovers
    assert len(model_calls(workspace)) == 1


def test_loopback_traffic_never_goes_through_a_proxy(workspace, tokens, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with fmapi.Relay(workspace.url + GEMINI, tokens) as relay:
        assert send(relay, "POST", GENERATE, PROMPT)[0] == 200
    # a real workspace is reached through the proxy the environment names, unless NO_PROXY exempts it
    monkeypatch.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.corp:3128")
    monkeypatch.setenv("https_proxy", "http://user:p%40ss@proxy.corp:3128")
    remote = fmapi.Relay("https://acme.cloud.databricks.com" + GEMINI, tokens)
    assert remote._proxy == ("proxy.corp", 3128, "Basic dXNlcjpwQHNz")
    monkeypatch.setenv("NO_PROXY", ".cloud.databricks.com")
    monkeypatch.setenv("no_proxy", ".cloud.databricks.com")
    assert fmapi.Relay("https://acme.cloud.databricks.com" + GEMINI, tokens)._proxy is None


def test_a_plain_http_proxy_gets_the_absolute_url(workspace, tokens, monkeypatch):
    """A non-loopback http upstream reached through an HTTP proxy (here a small one on loopback)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            seen.append((self.path, self.headers.get("Proxy-Authorization")))
            path = self.path.split("://", 1)[1].partition("/")[2]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            conn = http.client.HTTPConnection("127.0.0.1", workspace.port, timeout=10)
            conn.request("POST", "/" + path, body=body, headers={
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-authorization")})
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("http_proxy", "http://u:pw@127.0.0.1:%d" % proxy.server_address[1])
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        with fmapi.Relay("http://workspace.example:%d%s" % (workspace.port, GEMINI), tokens) as relay:
            assert send(relay, "POST", GENERATE, PROMPT)[0] == 200
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert seen == [("http://workspace.example:%d%s%s" % (workspace.port, GEMINI, GENERATE), "Basic dTpwdw==")]


def test_an_installs_token_source_renews_under_the_margin_and_falls_back_when_it_cannot(
        home, workspace, logged_in, tmp_path):
    d = tmp_path / "install"
    d.mkdir(mode=0o700)
    spec = fmapi.TokenSpec(agent="gemini", dir=str(d), host=workspace.url, profile=logged_in, lifetime_days=1,
                           min_left=300, comment="Gemini CLI FMAPI", auth="oauth")
    source = fmapi.relay_token_source(spec)
    first = source()
    assert workspace.credential_kind(first) == "oauth" and source() == first  # then a cache hit
    age_cache(d, 200)  # less than the margin left: renewed
    second = source()
    assert second != first and workspace.credential_kind(second) == "oauth"
    expire_cli_session(home)
    workspace.oauth_refresh_tokens.clear()  # from now on only `databricks auth login` helps
    age_cache(d, 200)
    assert source() == second  # renewing fails, but the cached token has minutes left: it serves
    age_cache(d, 30)
    with pytest.raises(fmapi.SessionExpired):
        source()
    assert not workspace.tokens  # OAuth mode: never a PAT


# ------------------------------------------------------------------ the launcher
CHILD = textwrap.dedent("""
    import http.client, json, os, sys
    conn = http.client.HTTPConnection("127.0.0.1", int(os.environ["RELAY_URL"].rsplit(":", 1)[1]), timeout=20)
    conn.request("POST", sys.argv[1], body=json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
                 headers={"Authorization": "Bearer " + os.environ["RELAY_KEY"], "Content-Type": "application/json"})
    print("status", conn.getresponse().status, flush=True)
    sys.exit(int(sys.argv[2]))
""")


def test_the_relay_serves_the_agent_and_ends_with_it(workspace, relay, tmp_path):
    env = dict(os.environ, RELAY_URL=relay.url, RELAY_KEY=relay.key)
    before = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)}
    out = tmp_path / "out"
    with open(out, "w") as handle:
        saved = os.dup(1)
        os.dup2(handle.fileno(), 1)
        try:
            status = fmapi.run_behind_relay(sys.executable, ["agent", "-c", CHILD, GENERATE, "7"], env, relay)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    assert status == 7  # the agent's exit status
    assert out.read_text() == "status 200\n"
    assert len(model_calls(workspace)) == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    assert {n: signal.getsignal(n) for n in before} == before  # fmapi's signal handlers are gone again


LAUNCHER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, os.environ["FMAPI_DIR"])
    import fmapi
    relay = fmapi.Relay(os.environ["WORKSPACE"] + "/serving-endpoints/gemini", lambda: os.environ["TOKEN"]).start()
    print("relay", relay.port, flush=True)
    sys.exit(fmapi.run_behind_relay(sys.executable, ["agent", "-c", os.environ["AGENT"]], dict(os.environ), relay))
""")

AGENT = textwrap.dedent("""
    import os, signal, sys, time
    got = []
    def note(signum, frame):
        got.append(signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, note)
    print("agent", os.getpid(), flush=True)
    deadline = time.time() + 20
    while not got and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a second copy of the signal would arrive now
    sys.exit(10 + len(got) * 10 + (got[0] if got else 0))
""")


def start_launcher(workspace, agent=AGENT, **kwargs):
    env = dict(os.environ, FMAPI_DIR=str(FMAPI.parent), WORKSPACE=workspace.url,
               TOKEN=workspace.issue_oauth()[0], AGENT=agent)
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)  # no controlling terminal, whatever runs the tests
    port = int(proc.stdout.readline().split()[1])
    agent_pid = int(proc.stdout.readline().split()[1])
    return proc, port, agent_pid


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_sent_to_fmapi_reach_the_agent_once(workspace, signum):
    proc, port, _ = start_launcher(workspace)
    proc.send_signal(signum)  # no terminal here: only fmapi gets it, and passes it on
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 20 + signum, err  # the agent saw it exactly once; its status is fmapi's
    assert err == ""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_an_agent_killed_by_a_signal_ends_fmapi_the_same_way(workspace):
    proc, port, agent_pid = start_launcher(workspace)
    os.kill(agent_pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_ctrl_c_in_the_terminal_reaches_the_agent_once(workspace):
    """In a terminal, Ctrl-C goes to the agent and fmapi alike: fmapi must not send it a second time."""
    import pty

    env = dict(os.environ, FMAPI_DIR=str(FMAPI.parent), WORKSPACE=workspace.url,
               TOKEN=workspace.issue_oauth()[0], AGENT=AGENT)
    pid, master = pty.fork()  # the child gets a new session with the pty as its controlling terminal
    if pid == 0:
        try:
            os.execve(sys.executable, [sys.executable, "-c", LAUNCHER], env)
        finally:
            os._exit(99)
    output = b""
    while not re.search(rb"agent \d+\r?\n", output):
        output += os.read(master, 1024)  # the agent is ready
    os.write(master, b"\x03")  # Ctrl-C, as typed
    _, status = os.waitpid(pid, 0)
    os.close(master)
    assert os.WIFEXITED(status), status
    assert os.WEXITSTATUS(status) == 20 + signal.SIGINT, output


# ------------------------------------------------------------------ paths that would leave the serving endpoint
ESCAPES = [
    "/../../api/2.0/token/create",
    "/%2e%2e/%2e%2e/api/2.0/token/create",
    "/%2E%2E/%2E%2e/api/2.0/token/create",
    "/..%2f..%2fapi/2.0/token/create",
    "/..%2F..%2Fapi/2.0/token/create",
    "/v1beta/../../../api/2.0/token/list",
    "/v1beta/models/./../../../api/2.0/token/list",
    "/%252e%252e/%252e%252e/api/2.0/token/create",
    "/..;/..;/api/2.0/token/create",
    "//evil.example/api/2.0/token/create",
    "/v1beta//../../api/2.0/token/list",
    "/v1beta\\..\\..\\api/2.0/token/list",
    "/v1beta%5c..%5c..%5capi/2.0/token/list",
    "/v1beta/models%2f..%2f..%2f..%2fapi/2.0/token/list",
    "/.",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_a_path_that_could_leave_the_serving_endpoint_is_refused(workspace, relay, tokens, path):
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=20)
    conn.putrequest("POST", path, skip_host=False, skip_accept_encoding=True)  # sent verbatim, as a hostile client would
    conn.putheader("x-goog-api-key", relay.key)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "2")
    conn.endheaders(b"{}")
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 400 and body["error_code"] == "BAD_REQUEST"
    assert workspace.requests == []  # nothing reached the workspace
    assert tokens.given == []  # no token was even fetched for it


def test_normal_paths_and_queries_still_pass(workspace, relay):
    assert send(relay, "POST", STREAM, PROMPT)[0] == 200
    assert send(relay, "POST", GENERATE + "?x=/../a%2f..", PROMPT)[0] == 200
    first, second = model_calls(workspace)
    assert first["path"] == GEMINI + STREAM.split("?")[0] and first["query"] == {"alt": "sse"}
    assert second["path"] == GEMINI + GENERATE and second["query"] == {"x": "/../a/.."}
