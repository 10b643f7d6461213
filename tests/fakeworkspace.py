"""A loopback fake of a Databricks workspace for fmapi's tests (standard library only).

``FakeWorkspace`` serves, on ``http://127.0.0.1:<random port>``, the parts of the Databricks REST
API that fmapi and the ``databricks`` CLI use (PATs, serving endpoints, workspace-conf, OIDC) and
the model-serving routes the coding agents call (Anthropic Messages, OpenAI Responses, Gemini),
with the same paths, JSON shapes, status codes and error bodies as the real service (see
/work/shared/spec/databricks.md and agents-e2e.md).

    with FakeWorkspace() as ws:
        access, refresh = ws.issue_oauth()
        ...  # point fmapi / the fake CLI at ws.url
        assert ws.requests_to("/serving-endpoints/anthropic")

Every request is recorded in ``ws.requests``. State is guarded by one lock (``ws.lock``).
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
import secrets
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "FakeWorkspace",
    "CODEX_BASE_PATH",
    "CODEX_BASE_PATHS",
    "DEFAULT_CHAT_ENDPOINTS",
    "MAX_BODY_BYTES",
    "make_endpoint",
    "parse_sse",
]

# Base URL path (under the workspace URL) that Codex's provider points at; the fake also answers
# the alternatives in CODEX_BASE_PATHS so fmapi can change its constant without touching the fake.
CODEX_BASE_PATH = "/serving-endpoints"
CODEX_BASE_PATHS = (
    "/serving-endpoints",
    "/serving-endpoints/openai/v1",
    "/ai-gateway/codex/v1",
    "/ai-gateway/openai/v1",
)
ANTHROPIC_PREFIXES = ("/serving-endpoints/anthropic", "/ai-gateway/anthropic")
GEMINI_PREFIXES = ("/serving-endpoints/gemini", "/ai-gateway/gemini")

MAX_BODY_BYTES = 5 * 1024 * 1024  # larger request bodies get 400 MALFORMED_REQUEST

DEFAULT_CHAT_ENDPOINTS = (
    ("databricks-claude-opus-4-6", "Claude Opus 4.6"),
    ("databricks-claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("databricks-claude-sonnet-4-5", "Claude Sonnet 4.5"),
    ("databricks-claude-haiku-4-5", "Claude Haiku 4.5"),
    ("databricks-gpt-5-2", "GPT-5.2"),
    ("databricks-gpt-5-2-codex", "GPT-5.2 Codex"),
    ("databricks-gemini-2-5-pro", "Gemini 2.5 Pro"),
    ("databricks-gemini-3-pro", "Gemini 3 Pro"),
)
EMBEDDINGS_ENDPOINT = "databricks-gte-large-en"
NOT_READY_ENDPOINT = "databricks-meta-llama-3-3-70b-instruct"

UNAUTHENTICATED_REST = {
    "error_code": "UNAUTHENTICATED",
    "message": "Credential was not sent or was of an unsupported type for this API.",
}
INVALID_TOKEN_REST = {"error_code": "403", "message": "Invalid access token."}
UNAUTHENTICATED_SERVING = {
    "error_code": 401,
    "message": "Credential was not sent or was of an unsupported type for this API.",
}
# A PAT the workspace does not (or no longer) accept - revoked, expired or unknown - gets 403
# "Invalid access token." from the workspace's front end on every route, the serving routes
# included; only a missing credential or one of an unsupported kind gets the 401 above. Seen in
# the wild as JSON {"error_code": 403, "message": "Invalid access token."} with
# X-Databricks-Reason-Phrase: Invalid access token. (databricks/databricks-sdk-go#873) and, from
# older front ends, as an HTML "Error 403 Invalid access token." page
# (Azure/MachineLearningNotebooks#840). That serving routes answer the same is inferred from the
# shared front end (spec/databricks.md says "401 or 403"): Claude Code 2.1.331 re-runs its helper
# on either; Codex 0.169.0 re-runs its auth command on 401 only.
INVALID_TOKEN_SERVING = {"error_code": 403, "message": "Invalid access token."}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_endpoint(name, task="llm/v1/chat", ready=True, display_name=None, foundation=True,
                  config_update="NOT_UPDATING", api_types=None):
    """Build a serving endpoint dict in the shape ``GET /api/2.0/serving-endpoints`` returns.

    api_types: the wire APIs the workspace says the model serves, e.g.
    ``["mlflow/v1/chat/completions", "anthropic/v1/messages", "openai/v1/responses"]``
    (config.served_entities[].foundation_model.api_types; spec/databricks.md, "Endpoint
    capabilities"). Not every workspace lists them: None leaves the key out.
    """
    entity = {"name": name, "entity_name": "system.ai." + name, "entity_version": "1"}
    if foundation:
        entity["foundation_model"] = {
            "name": name,
            "display_name": display_name or name,
            "docs": "https://docs.databricks.com/en/machine-learning/foundation-models/index.html",
            "description": (display_name or name) + " served by Foundation Model APIs.",
        }
        if api_types is not None:
            entity["foundation_model"]["api_types"] = list(api_types)
    else:
        entity["external_model"] = {"provider": "custom", "name": name, "task": task}
    ep = {
        "name": name,
        "id": secrets.token_hex(16),
        "creator": "System-User",
        "creation_timestamp": 1730000000000,
        "last_updated_timestamp": 1730000000000,
        "state": {
            "ready": "READY" if ready else "NOT_READY",
            "config_update": config_update,
        },
        "config": {"served_entities": [entity]},
        "tags": [],
        "task": task,
        "permission_level": "CAN_QUERY",
        "route_optimized": False,
    }
    if foundation:
        ep["endpoint_type"] = "FOUNDATION_MODEL_API"
    return ep


def _default_endpoints():
    eps = [make_endpoint(n, display_name=d) for n, d in DEFAULT_CHAT_ENDPOINTS]
    eps.append(make_endpoint(EMBEDDINGS_ENDPOINT, task="llm/v1/embeddings",
                             display_name="GTE Large (En)"))
    eps.append(make_endpoint(NOT_READY_ENDPOINT, ready=False, display_name="Llama 3.3 70B Instruct",
                             config_update="IN_PROGRESS"))
    return eps


def parse_sse(text):
    """Parse an SSE body into a list of (event_name_or_None, data_obj_or_str) tuples."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    events = []
    for frame in re.split(r"\r?\n\r?\n", text):
        if not frame.strip():
            continue
        name, data = None, []
        for line in frame.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        payload = "\n".join(data)
        try:
            payload = json.loads(payload)
        except ValueError:
            pass
        events.append((name, payload))
    return events


class _Response:
    def __init__(self, status, body=b"", content_type="application/json", headers=None):
        self.status = status
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.frames = None  # an SSE answer's frames (text), for sending them one at a time


def _json(status, obj, headers=None):
    return _Response(status, obj, "application/json", headers)


def _error(status, code, message):
    return _json(status, {"error_code": code, "message": message})


def _sse(frames):
    """frames: list of (event_name_or_None, obj)."""
    text = [("event: %s\n" % name if name else "") + "data: %s\n\n" % json.dumps(obj, separators=(",", ":"))
            for name, obj in frames]
    resp = _Response(200, "".join(text), "text/event-stream", {"Cache-Control": "no-cache"})
    resp.frames = text
    return resp


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeDatabricks/1.0"
    sys_version = ""
    timeout = 30

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def _handle(self):
        self.server.workspace._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def read_body(self):
        """Return (raw bytes, too_large). Always drains the body so keep-alive keeps working."""
        chunks, total, too_large = [], 0, False

        def take(data):
            nonlocal total, too_large
            total += len(data)
            if total > MAX_BODY_BYTES:
                too_large = True
            elif data:
                chunks.append(data)

        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                while size:
                    part = self.rfile.read(min(size, 65536))
                    if not part:
                        break
                    take(part)
                    size -= len(part)
                self.rfile.readline(65537)
        else:
            try:
                remaining = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                remaining = 0
            while remaining > 0:
                part = self.rfile.read(min(remaining, 65536))
                if not part:
                    break
                take(part)
                remaining -= len(part)
        body = b"" if too_large else b"".join(chunks)
        enc = (self.headers.get("Content-Encoding") or "").lower().strip()
        if body and enc:
            try:
                if enc == "gzip":
                    body = gzip.decompress(body)
                elif enc == "deflate":
                    body = zlib.decompress(body)
                elif enc == "zstd":
                    from compression import zstd  # Python 3.14+

                    body = zstd.decompress(body)
            except Exception:  # leave the raw body; JSON parsing will fail -> 400
                pass
            if len(body) > MAX_BODY_BYTES:
                body, too_large = b"", True
        return body, too_large

    def send(self, resp):
        ws = self.server.workspace
        if resp.frames and (ws.stream_chunked or ws.stream_gate is not None) \
                and self.request_version == "HTTP/1.1" and self.command != "HEAD":
            return self.send_streamed(resp, ws.stream_gate)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)
        self.wfile.flush()

    def send_streamed(self, resp, gate):
        """An SSE answer as a streaming server sends it: chunked, one chunk per frame as it is
        ready. With a gate (threading.Event), the first frame goes out, then the rest waits
        (at most 30 s) until the test sets the gate."""
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        for n, frame in enumerate(resp.frames):
            if n == 1 and gate is not None:
                gate.wait(30)
            data = frame.encode("utf-8")
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        with self.server.workspace.lock:
            self.server.workspace.streams_finished += 1  # counted before the last chunk ends the stream
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            return  # a client hung up (an agent killed mid-stream) or refused our TLS certificate
        super().handle_error(request, client_address)


class FakeWorkspace:
    """A fake Databricks workspace on 127.0.0.1. See the module docstring."""

    def __init__(self, latency=0.0, reply_text="Hello from the fake workspace.", tls=None):
        """tls: (certificate file, key file) to serve HTTPS on https://localhost:<port>
        (e.g. from trustme), as a workspace behind a TLS-inspecting proxy looks."""
        self.tls = tls
        self.lock = threading.RLock()
        self.latency = latency
        self.reply_text = reply_text
        self.requests = []
        # PATs: token_id -> {token_id, token_value, comment, creation_time, expiry_time,
        #                    created_by_bearer}
        self.tokens = {}
        # OAuth: access token -> expiry (epoch seconds); refresh token -> {"created": epoch s}
        self.oauth_access_tokens = {}
        self.oauth_refresh_tokens = {}
        self.oauth_login_allowed = True
        self.oauth_token_lifetime = 3600     # expires_in of tokens minted by /oidc/v1/token
        self.rotate_refresh_tokens = False   # refresh grant returns a new refresh token if True
        self.serving_endpoints = _default_endpoints()
        self.max_token_lifetime_days = 730   # None = no workspace maximum
        self.tokens_allowed = True           # False: this user may not use tokens -> 403 PERMISSION_DENIED
        self.tokens_enabled = True           # False: an admin turned PATs off (enableTokensConfig "false")
        self.workspace_conf_readable = True  # False: workspace-conf -> 403 (non-admins may not read it)
        self.check_models = True             # model traffic must name a READY endpoint
        # Streaming as the real service does it: SSE answers chunked, one chunk per frame (a
        # streamed Gemini answer then comes in one frame per piece of text, the last one with
        # finishReason and usageMetadata, as the Gemini API sends them). Off: one body with a
        # Content-Length. A threading.Event in stream_gate holds every streamed answer after its
        # first frame until the test sets it; streams_finished counts streamed answers sent whole.
        self.stream_chunked = False
        self.stream_gate = None
        self.streams_finished = 0
        # Scripted Gemini answers: each model call takes the next item, {"parts": [...]} (e.g.
        # [{"functionCall": {"name": "list_directory", "args": {"dir_path": "."}}}], the Gemini
        # API's shape for a tool call) and an optional "delay" in seconds before answering.
        # Empty: the answer is reply_text.
        self.gemini_replies = []
        self.user_name = "fake.user@example.com"
        self._failures = []
        self._stopping = threading.Event()  # set by stop(): hung requests give up
        self._server = None
        self._thread = None
        self._port = None

    # ---------------------------------------------------------------- lifecycle
    def start(self):
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        if self.tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                        do_handshake_on_connect=False)
        self._server.workspace = self
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="FakeWorkspace", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        """The bound port (kept after stop(), so a stopped workspace's url still refuses)."""
        if self._port is None:
            raise RuntimeError("FakeWorkspace is not started")
        return self._port

    @property
    def url(self):
        if self.tls:
            return "https://localhost:%d" % self.port
        return "http://127.0.0.1:%d" % self.port

    # ---------------------------------------------------------------- recorded requests
    def requests_to(self, path_prefix, method=None):
        with self.lock:
            return [r for r in self.requests
                    if r["path"].startswith(path_prefix)
                    and (method is None or r["method"] == method.upper())]

    def clear_requests(self):
        with self.lock:
            del self.requests[:]

    # ---------------------------------------------------------------- failure injection
    def fail_next(self, method, path, status, body=None, headers=None, times=1):
        """The next ``times`` requests matching (method, path) get ``status`` with ``body``.

        method: "GET", "POST", … or "*"/None for any. path: exact path without query, or a
        prefix when it ends with "*". body: dict/list -> JSON; str -> text/plain (text/html when
        it starts with "<"); bytes as is; None -> a Databricks-style error for the status.
        """
        if body is None:
            code = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                    404: "RESOURCE_DOES_NOT_EXIST", 429: "REQUEST_LIMIT_EXCEEDED",
                    500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}.get(status, "UNKNOWN")
            body = {"error_code": code, "message": "Injected failure (HTTP %d)." % status}
        with self.lock:
            self._failures.append({"method": (method or "*").upper(), "path": path,
                                   "status": status, "body": body,
                                   "headers": dict(headers or {}), "times": times})

    def fault_next(self, method, path, kind, times=1, delay=None):
        """The next ``times`` requests matching (method, path) meet a network fault.

        kind: "reset" - the connection is reset (TCP RST) without an answer;
              "close" - the server closes the connection without an answer;
              "hang"  - no answer for ``delay`` seconds (default: until the workspace stops),
                        then the normal answer (a client that gave up never sees it).
        The request is still recorded in ``requests``. method/path as in fail_next.
        """
        with self.lock:
            self._failures.append({"method": (method or "*").upper(), "path": path, "kind": kind,
                                   "delay": delay, "times": times})

    def _take_failure(self, method, path):
        with self.lock:
            for f in self._failures:
                if f["method"] not in ("*", method):
                    continue
                p = f["path"]
                if p.endswith("*") and path.startswith(p[:-1]) or p == path:
                    f["times"] -= 1
                    if f["times"] <= 0:
                        self._failures.remove(f)
                    return f
        return None

    # ---------------------------------------------------------------- PATs
    def _new_pat(self, comment, lifetime_seconds, value=None, created_by=None):
        now = _now_ms()
        info = {
            "token_id": secrets.token_hex(32),
            "token_value": value or ("dapi" + secrets.token_hex(16)),
            "comment": comment or "",
            "creation_time": now,
            "expiry_time": now + int(lifetime_seconds) * 1000 if lifetime_seconds else -1,
            "created_by_bearer": created_by,
        }
        with self.lock:
            self.tokens[info["token_id"]] = info
        return info

    def add_pat(self, comment, lifetime_seconds=86400, value=None):
        """Seed a PAT (e.g. another install's). Returns the stored token dict (with token_value)."""
        return dict(self._new_pat(comment, lifetime_seconds, value))

    @staticmethod
    def _pat_live(info, now_ms=None):
        exp = info["expiry_time"]
        return exp == -1 or exp > (now_ms if now_ms is not None else _now_ms())

    def pat_values(self):
        """Set of token values of live, unexpired PATs."""
        with self.lock:
            now = _now_ms()
            return {t["token_value"] for t in self.tokens.values() if self._pat_live(t, now)}

    def pats_with_comment_prefix(self, prefix):
        """Live, unexpired PATs whose comment starts with prefix, oldest first (full dicts)."""
        with self.lock:
            now = _now_ms()
            found = [dict(t) for t in self.tokens.values()
                     if (t["comment"] or "").startswith(prefix) and self._pat_live(t, now)]
        return sorted(found, key=lambda t: t["creation_time"])

    def find_pat(self, value):
        """The stored dict of a PAT by its value (live or expired), or None."""
        with self.lock:
            for t in self.tokens.values():
                if t["token_value"] == value:
                    return dict(t)
        return None

    def expire_pat(self, token_id_or_value):
        """Make a PAT expired (still stored, no longer valid or listed)."""
        with self.lock:
            for t in self.tokens.values():
                if token_id_or_value in (t["token_id"], t["token_value"]):
                    t["expiry_time"] = _now_ms() - 1000
                    return True
        return False

    def revoke_pat(self, token_id_or_value):
        """Delete a PAT server-side (as if revoked in the UI)."""
        with self.lock:
            for tid, t in list(self.tokens.items()):
                if token_id_or_value in (tid, t["token_value"]):
                    del self.tokens[tid]
                    return True
        return False

    # ---------------------------------------------------------------- OAuth
    def issue_oauth(self, lifetime=3600):
        """Mint an OAuth (access_token, refresh_token) pair as a U2M login would."""
        refresh = "doau" + secrets.token_hex(32)
        access = self._new_access(lifetime)
        with self.lock:
            self.oauth_refresh_tokens[refresh] = {"created": time.time()}
        return access, refresh

    def _new_access(self, lifetime):
        now = int(time.time())
        header = _b64url(json.dumps({"kid": secrets.token_hex(8), "typ": "at+jwt",
                                     "alg": "RS256"}).encode())
        payload = _b64url(json.dumps({
            "client_id": "databricks-cli", "scope": "offline_access all-apis",
            "sub": self.user_name, "iss": "fake-workspace/oidc", "aud": "fake-workspace",
            "iat": now, "exp": now + int(lifetime), "jti": secrets.token_hex(16),
        }).encode())
        access = "%s.%s.%s" % (header, payload, _b64url(secrets.token_bytes(64)))
        with self.lock:
            self.oauth_access_tokens[access] = time.time() + lifetime
        return access

    def expire_session(self):
        """Invalidate every refresh token and OAuth access token: the user must sign in again."""
        with self.lock:
            self.oauth_access_tokens.clear()
            self.oauth_refresh_tokens.clear()

    def credential_kind(self, bearer):
        """'pat' / 'oauth' for a currently valid credential, else None."""
        if not bearer:
            return None
        with self.lock:
            exp = self.oauth_access_tokens.get(bearer)
            if exp is not None and exp > time.time():
                return "oauth"
            now = _now_ms()
            for t in self.tokens.values():
                if t["token_value"] == bearer and self._pat_live(t, now):
                    return "pat"
        return None

    # ---------------------------------------------------------------- serving
    def _serve(self, h):
        split = urlsplit(h.path)
        path = split.path or "/"
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        body, too_large = h.read_body()
        headers = {k.lower(): v for k, v in h.headers.items()}
        parsed = None
        if body:
            try:
                parsed = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                parsed = None
        req = {"method": h.command, "path": path, "query": query, "headers": headers,
               "body": body, "json": parsed, "time": time.time()}
        with self.lock:
            self.requests.append(req)
        if self.latency:
            time.sleep(self.latency)
        fail = self._take_failure(h.command, path)
        kind = (fail or {}).get("kind")
        if kind in ("reset", "close"):
            import socket
            import struct

            if kind == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        if kind == "hang":
            self._stopping.wait(fail["delay"] if fail["delay"] is not None else 3600)
            fail = None
        try:
            resp = self._dispatch(req, too_large, fail)
        except Exception as e:  # a bug in the fake: make it visible as a 500
            resp = _error(500, "INTERNAL_ERROR", "fake workspace error: %r" % (e,))
        try:
            h.send(resp)
        except (ConnectionError, TimeoutError):
            h.close_connection = True

    def _dispatch(self, req, too_large, fail=None):
        path = req["path"]
        if fail is not None:
            body = fail["body"]
            if isinstance(body, (dict, list)):
                ctype = "application/json"
            elif isinstance(body, str) and body.lstrip().startswith("<"):
                ctype = "text/html; charset=utf-8"
            else:
                ctype = "text/plain; charset=utf-8"
            return _Response(fail["status"], body, ctype, fail["headers"])
        if too_large:
            return _error(400, "MALFORMED_REQUEST",
                          "Request body is too large (limit %d bytes)." % MAX_BODY_BYTES)
        if path.startswith("/oidc/"):
            return self._oidc(req)
        if path.startswith("/api/"):
            return self._rest(req)
        if path.startswith("/serving-endpoints/") or path.startswith("/ai-gateway/"):
            return self._model(req)
        return self._not_found(req)

    @staticmethod
    def _not_found(req):
        return _error(404, "ENDPOINT_NOT_FOUND",
                      "No API found for '%s %s'" % (req["method"], req["path"]))

    @staticmethod
    def _bearer(req):
        auth = req["headers"].get("authorization", "")
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer":
            return ""
        return value.strip()

    @staticmethod
    def _json_body(req, required=False):
        """(obj, error_response). Empty body is {} unless required."""
        if not req["body"]:
            if required:
                return None, _error(400, "MALFORMED_REQUEST",
                                    "Invalid JSON given in the body of the request - "
                                    "expected a map")
            return {}, None
        if not isinstance(req["json"], dict):
            return None, _error(400, "MALFORMED_REQUEST",
                                "Invalid JSON given in the body of the request - expected a map")
        return req["json"], None

    # ---- /oidc
    def _oidc(self, req):
        method, path = req["method"], req["path"]
        base = self.url
        if path == "/oidc/.well-known/oauth-authorization-server" and method in ("GET", "HEAD"):
            return _json(200, {
                "issuer": base + "/oidc",
                "authorization_endpoint": base + "/oidc/v1/authorize",
                "token_endpoint": base + "/oidc/v1/token",
                "jwks_uri": base + "/oidc/jwks.json",
                "response_types_supported": ["code", "id_token"],
                "grant_types_supported": ["client_credentials", "authorization_code",
                                          "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post", "none"],
                "scopes_supported": ["all-apis", "email", "offline_access", "openid",
                                     "profile", "sql"],
            })
        if path == "/oidc/v1/authorize" and method == "GET":
            return _Response(200, "<html><body>Fake Databricks sign-in</body></html>",
                             "text/html; charset=utf-8")
        if path == "/oidc/v1/token" and method == "POST":
            return self._oidc_token(req)
        return self._not_found(req)

    def _oidc_token(self, req):
        try:
            form = {k: v[0] for k, v in
                    parse_qs(req["body"].decode("utf-8"), keep_blank_values=True).items()}
        except UnicodeDecodeError:
            form = {}
        grant = form.get("grant_type", "")
        if grant == "refresh_token":
            rt = form.get("refresh_token", "")
            with self.lock:
                alive = rt in self.oauth_refresh_tokens
                if alive and self.rotate_refresh_tokens:
                    del self.oauth_refresh_tokens[rt]
                    rt = "doau" + secrets.token_hex(32)
                    self.oauth_refresh_tokens[rt] = {"created": time.time()}
            if not alive:
                return _json(401, {"error": "invalid_request",
                                   "error_description": "Refresh token is invalid"})
            access = self._new_access(self.oauth_token_lifetime)
        elif grant == "authorization_code":
            if not form.get("code"):
                return _json(400, {"error": "invalid_request",
                                   "error_description": "Missing authorization code"})
            if not self.oauth_login_allowed:
                return _json(400, {"error": "invalid_grant",
                                   "error_description": "Authorization code is invalid"})
            access, rt = self.issue_oauth(self.oauth_token_lifetime)
        else:
            return _json(400, {"error": "unsupported_grant_type",
                               "error_description": "Unsupported grant type: %r" % grant})
        return _json(200, {"access_token": access, "token_type": "Bearer",
                           "expires_in": self.oauth_token_lifetime, "refresh_token": rt,
                           "scope": "offline_access all-apis"})

    # ---- /api/2.0 REST
    def _rest(self, req):
        bearer = self._bearer(req)
        if not bearer:
            return _json(401, UNAUTHENTICATED_REST)
        if self.credential_kind(bearer) is None:
            return _json(403, INVALID_TOKEN_REST)
        method, path = req["method"], req["path"].rstrip("/")
        if path.startswith("/api/2.0/token/"):
            if not self.tokens_allowed:
                return _error(403, "PERMISSION_DENIED",
                              "User does not have permission to use tokens.")
            if not self.tokens_enabled:
                # The exact text is not documented (shared/spec/databricks.md: "match on the code
                # and the call, not the words"); the code and status are.
                return _error(403, "PERMISSION_DENIED",
                              "Personal access tokens are disabled for this workspace.")
            if path == "/api/2.0/token/create" and method == "POST":
                return self._token_create(req, bearer)
            if path == "/api/2.0/token/list" and method == "GET":
                return self._token_list()
            if path == "/api/2.0/token/delete" and method == "POST":
                return self._token_delete(req)
            return self._not_found(req)
        if path == "/api/2.0/serving-endpoints" and method == "GET":
            with self.lock:
                return _json(200, {"endpoints": copy.deepcopy(self.serving_endpoints)})
        m = re.match(r"^/api/2\.0/serving-endpoints/([^/]+)$", path)
        if m and method == "GET":
            ep = self._endpoint(m.group(1))
            if ep is None:
                return _error(404, "RESOURCE_DOES_NOT_EXIST",
                              "Endpoint with name '%s' does not exist." % m.group(1))
            return _json(200, ep)
        if path == "/api/2.0/workspace-conf" and method == "GET":
            return self._workspace_conf(req)
        if path == "/api/2.0/preview/scim/v2/Me" and method == "GET":
            return _json(200, {
                "id": "4242424242424242", "userName": self.user_name,
                "displayName": "Fake User", "active": True,
                "emails": [{"value": self.user_name, "type": "work", "primary": True}],
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            })
        return self._not_found(req)

    def _token_create(self, req, bearer):
        obj, err = self._json_body(req)
        if err:
            return err
        lifetime = obj.get("lifetime_seconds")
        if lifetime in (None, ""):
            lifetime = 0
        try:
            lifetime = int(lifetime)
        except (TypeError, ValueError):
            return _error(400, "INVALID_PARAMETER_VALUE",
                          "Invalid value for lifetime_seconds: %r" % (lifetime,))
        if lifetime < 0:
            return _error(400, "INVALID_PARAMETER_VALUE",
                          "Token lifetime must be a positive number of seconds.")
        max_days = self.max_token_lifetime_days
        if max_days and lifetime > int(max_days) * 86400:
            return _error(400, "INVALID_PARAMETER_VALUE",
                          "Token lifetime of %d seconds exceeds the maximum lifetime of %d "
                          "days (%d seconds) allowed by the workspace administrator."
                          % (lifetime, int(max_days), int(max_days) * 86400))
        comment = obj.get("comment") or ""
        info = self._new_pat(comment, lifetime, created_by=bearer)
        return _json(200, {"token_value": info["token_value"],
                           "token_info": self._public_info(info)})

    @staticmethod
    def _public_info(info):
        return {k: info[k] for k in ("token_id", "creation_time", "expiry_time", "comment")}

    def _token_list(self):
        with self.lock:
            now = _now_ms()
            infos = [self._public_info(t) for t in
                     sorted(self.tokens.values(), key=lambda t: t["creation_time"])
                     if self._pat_live(t, now)]
        return _json(200, {"token_infos": infos} if infos else {})

    def _token_delete(self, req):
        obj, err = self._json_body(req)
        if err:
            return err
        tid = obj.get("token_id")
        if not tid:
            return _error(400, "INVALID_PARAMETER_VALUE", "Missing required field: token_id")
        with self.lock:
            if tid not in self.tokens:
                return _error(404, "RESOURCE_DOES_NOT_EXIST",
                              "Token with id '%s' does not exist." % tid)
            del self.tokens[tid]
        return _json(200, {})

    def _workspace_conf(self, req):
        if not self.workspace_conf_readable:
            return _error(403, "PERMISSION_DENIED",
                          "Only workspace admins can read the workspace configuration.")
        keys = [k.strip() for k in req["query"].get("keys", "").split(",") if k.strip()]
        known = {
            "maxTokenLifetimeDays": (None if self.max_token_lifetime_days is None
                                     else str(self.max_token_lifetime_days)),
            "enableTokensConfig": "true" if self.tokens_enabled else "false",
        }
        bad = [k for k in keys if k not in known]
        if bad:
            return _error(400, "INVALID_PARAMETER_VALUE",
                          "Invalid keys: %s" % json.dumps(bad))
        return _json(200, {k: known[k] for k in keys})

    def _endpoint(self, name):
        with self.lock:
            for ep in self.serving_endpoints:
                if ep.get("name") == name:
                    return copy.deepcopy(ep)
        return None

    # ---- model traffic
    def _model(self, req):
        method, path = req["method"], req["path"]
        for prefix in ANTHROPIC_PREFIXES:
            if path == prefix or path.startswith(prefix + "/"):
                rest = path[len(prefix):]
                if rest in ("/v1/messages", "/v1/messages/count_tokens") and method == "POST":
                    return self._authed(req, self._anthropic, rest.endswith("count_tokens"))
                if method in ("GET", "HEAD"):  # preflight (HEAD …/api/hello) and the like
                    return _json(200, {})
                return self._not_found(req)
        for prefix in GEMINI_PREFIXES:
            if path.startswith(prefix + "/"):
                m = re.match(r"^/(v1beta|v1)/models/([^/:]+):(streamGenerateContent|"
                             r"generateContent|countTokens)$", path[len(prefix):])
                if m and method == "POST":
                    return self._authed(req, self._gemini, m.group(2), m.group(3))
                return self._not_found(req)
        bases = (CODEX_BASE_PATH,) + tuple(b for b in CODEX_BASE_PATHS if b != CODEX_BASE_PATH)
        for base in bases:
            if path == base + "/responses" and method == "POST":
                return self._authed(req, self._responses)
            if path == base + "/models" and method in ("GET", "HEAD"):
                return self._authed(req, lambda r: _json(200, {"models": []}))
            if path == base + "/chat/completions" and method == "POST":
                return self._authed(req, self._chat, None)
        m = re.match(r"^/serving-endpoints/([^/]+)/invocations$", path)
        if m and method == "POST":
            return self._authed(req, self._chat, m.group(1))
        return self._not_found(req)

    def _authed(self, req, fn, *args):
        bearer = self._bearer(req)
        if self.credential_kind(bearer) is None:
            if bearer.startswith("dapi"):  # a PAT, dead or unknown
                return _json(403, INVALID_TOKEN_SERVING)
            return _json(401, UNAUTHENTICATED_SERVING)
        return fn(req, *args)

    def _check_model(self, name):
        if not self.check_models:
            return None
        ep = self._endpoint(name) if name else None
        if ep is None:
            return _error(404, "RESOURCE_DOES_NOT_EXIST",
                          "The given endpoint does not exist, please retry after checking the "
                          "specified model and version deployment exists. Endpoint: %r" % name)
        if ep.get("state", {}).get("ready") != "READY":
            return _error(503, "TEMPORARILY_UNAVAILABLE",
                          "Endpoint %r is not ready to serve requests." % name)
        return None

    def _usage(self, req):
        inp = max(1, len(req["body"]) // 4)
        out = max(1, len(self.reply_text.split()))
        return inp, out

    def _chunks(self):
        words = re.findall(r"\S+\s*", self.reply_text) or [self.reply_text]
        half = max(1, len(words) // 2)
        parts = ["".join(words[:half]), "".join(words[half:])]
        return [p for p in parts if p] or [""]

    def _anthropic(self, req, count_only):
        obj, err = self._json_body(req, required=True)
        if err:
            return err
        model = obj.get("model")
        if not model or not isinstance(obj.get("messages"), list):
            return _error(400, "BAD_REQUEST", "Request must include 'model' and 'messages'.")
        err = self._check_model(model)
        if err:
            return err
        inp, out = self._usage(req)
        if count_only:
            return _json(200, {"input_tokens": inp})
        msg_id = "msg_fake" + secrets.token_hex(12)
        text = self.reply_text
        if not obj.get("stream"):
            return _json(200, {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": inp, "output_tokens": out},
            })
        frames = [("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}})]
        for piece in self._chunks():
            frames.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta",
                                                             "text": piece}}))
        frames += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": out}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return _sse(frames)

    def _responses(self, req):
        obj, err = self._json_body(req, required=True)
        if err:
            return err
        model = obj.get("model")
        if not model:
            return _error(400, "BAD_REQUEST", "Request must include 'model'.")
        err = self._check_model(model)
        if err:
            return err
        inp, out = self._usage(req)
        text = self.reply_text
        created = int(time.time())
        resp_id = "resp_fake" + secrets.token_hex(12)
        item_id = "msg_fake" + secrets.token_hex(12)

        def response(status, output, usage=None):
            r = {"id": resp_id, "object": "response", "created_at": created, "model": model,
                 "status": status, "output": output}
            if usage:
                r["usage"] = usage
            return r

        part_done = {"type": "output_text", "text": text, "annotations": []}
        item_done = {"id": item_id, "type": "message", "status": "completed",
                     "role": "assistant", "content": [part_done]}
        usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": inp + out}
        if not obj.get("stream"):
            return _json(200, response("completed", [item_done], usage))
        events = [
            {"type": "response.created", "response": response("in_progress", [])},
            {"type": "response.in_progress", "response": response("in_progress", [])},
            {"type": "response.output_item.added", "output_index": 0,
             "item": {"id": item_id, "type": "message", "status": "in_progress",
                      "role": "assistant", "content": []}},
            {"type": "response.content_part.added", "item_id": item_id, "output_index": 0,
             "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
        ]
        for piece in self._chunks():
            events.append({"type": "response.output_text.delta", "item_id": item_id,
                           "output_index": 0, "content_index": 0, "delta": piece})
        events += [
            {"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
             "content_index": 0, "text": text},
            {"type": "response.content_part.done", "item_id": item_id, "output_index": 0,
             "content_index": 0, "part": part_done},
            {"type": "response.output_item.done", "output_index": 0, "item": item_done},
            {"type": "response.completed", "response": response("completed", [item_done], usage)},
        ]
        frames = []
        for seq, ev in enumerate(events):
            ev["sequence_number"] = seq
            frames.append((ev["type"], ev))
        return _sse(frames)

    def _gemini(self, req, model, action):
        obj, err = self._json_body(req, required=True)
        if err:
            return err
        err = self._check_model(model)
        if err:
            return err
        inp, out = self._usage(req)
        if action == "countTokens":
            return _json(200, {"totalTokens": inp})
        if not isinstance(obj.get("contents"), list):
            return _error(400, "BAD_REQUEST", "Request must include 'contents'.")
        with self.lock:
            scripted = self.gemini_replies.pop(0) if self.gemini_replies else None
        if scripted and scripted.get("delay"):
            time.sleep(scripted["delay"])
        parts = scripted["parts"] if scripted else [{"text": self.reply_text}]
        usage = {"promptTokenCount": inp, "candidatesTokenCount": out, "totalTokenCount": inp + out}

        def answer(parts, finish=True):
            candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
            frame = {"candidates": [candidate], "modelVersion": model}
            if finish:
                candidate["finishReason"] = "STOP"
                frame["usageMetadata"] = usage
            return frame

        if action == "generateContent":
            return _json(200, answer(parts))
        if self.stream_chunked and not scripted:
            pieces = self._chunks()
            return _sse([(None, answer([{"text": p}], finish=n == len(pieces) - 1))
                         for n, p in enumerate(pieces)])
        return _sse([(None, answer(parts))])

    def _chat(self, req, endpoint):
        """OpenAI chat completions (``/serving-endpoints/{name}/invocations`` or
        ``…/chat/completions``); non-streamed JSON or chat.completion.chunk SSE."""
        obj, err = self._json_body(req, required=True)
        if err:
            return err
        model = endpoint or obj.get("model")
        err = self._check_model(model)
        if err:
            return err
        inp, out = self._usage(req)
        cid = "chatcmpl-fake" + secrets.token_hex(8)
        created = int(time.time())
        if not obj.get("stream"):
            return _json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": self.reply_text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": inp, "completion_tokens": out,
                          "total_tokens": inp + out},
            })
        frames = [(None, {"id": cid, "object": "chat.completion.chunk", "created": created,
                          "model": model, "choices": [{"index": 0, "delta": {
                              "role": "assistant", "content": piece}, "finish_reason": None}]})
                  for piece in self._chunks()]
        frames.append((None, {"id": cid, "object": "chat.completion.chunk", "created": created,
                              "model": model, "choices": [{"index": 0, "delta": {},
                                                           "finish_reason": "stop"}]}))
        if (obj.get("stream_options") or {}).get("include_usage"):
            # OpenAI's stream_options.include_usage: one last chunk, no choices, the usage
            frames.append((None, {"id": cid, "object": "chat.completion.chunk", "created": created,
                                  "model": model, "choices": [],
                                  "usage": {"prompt_tokens": inp, "completion_tokens": out,
                                            "total_tokens": inp + out}}))
        resp = _sse(frames)
        resp.body += b"data: [DONE]\n\n"
        resp.frames.append("data: [DONE]\n\n")
        return resp
