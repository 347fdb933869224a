"""A small HTTP layer on the standard library for the dashboard process: a route table, JSON
replies, the token check and a server-side websocket (RFC 6455, text frames only), so the
dashboard costs no third-party import and starts in a fraction of a second.

    routes = Routes()
    routes.add("GET", "/api/jobs/{job_id}", handler)      # handler(request) -> Response
    server = serve_on_socket(listening_socket, routes, token=None)

A handler gets a `Request` (method, path, params from the pattern, query, headers, body) and
returns a `Response`; `HttpError(status, message)` becomes a JSON error reply; anything else
raised becomes a 500 with the message (logged with its traceback).
"""
import base64
import hashlib
import hmac
import json
import logging
import re
import socket
import struct
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("zray.dashboard")

MAX_BODY_BYTES = 512 << 20      # an uploaded working_dir package at most
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict
    query: dict
    headers: dict
    body: bytes
    connection: object = None    # the handler, for websockets

    def json(self):
        try:
            value = json.loads(self.body or b"null")
        except ValueError as exc:
            raise HttpError(400, f"the request body is not valid JSON: {exc}") from None
        return value

    def arg(self, name, default=None):
        return self.query.get(name, default)


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


def json_response(value, status=200):
    return Response(status, json.dumps(value, default=str).encode())


class Routes:
    def __init__(self):
        self._routes = []       # (method, compiled pattern, handler)

    def add(self, method, pattern, handler):
        regex = "^" + re.sub(r"\{(\w+)(:path)?\}",
                             lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})",
                             pattern) + "$"
        self._routes.append((method, re.compile(regex), handler))

    def find(self, method, path):
        """(handler, params); HttpError 404 / 405."""
        allowed = False
        for m, regex, handler in self._routes:
            match = regex.match(path)
            if match:
                if m == method:
                    return handler, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                allowed = True
        if allowed:
            raise HttpError(405, f"{method} is not allowed on {path}")
        raise HttpError(404, f"no such page or API: {path}")


def token_ok(headers, query, cookie_name, token):
    """The cluster's token in `Authorization: Bearer`, the `token` query argument or the
    dashboard's cookie (set once a browser came with ?token=)."""
    given = []
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given.append(auth[7:].strip())
    if "token" in query:
        given.append(query["token"])
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == cookie_name:
            given.append(value)
    return any(hmac.compare_digest(g.encode(), token.encode()) for g in given)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zray-dashboard"

    def log_message(self, fmt, *args):   # access log at DEBUG, not on stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method):
        server = self.server
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        headers = {k.lower(): v for k, v in self.headers.items()}
        set_cookie = None
        try:
            length = int(headers.get("content-length") or 0)
            if length < 0 or length > MAX_BODY_BYTES:
                raise HttpError(413, f"request body of {length} bytes is over the limit")
            body = self.rfile.read(length) if length else b""
            if server.token is not None:
                if not token_ok(headers, query, server.cookie_name, server.token):
                    raise HttpError(401, "this dashboard is reachable beyond this host and needs "
                                         "the cluster's token: send 'Authorization: Bearer "
                                         "<token>' (or open the page once with ?token=<token>)")
                if "token" in query:
                    set_cookie = (f"{server.cookie_name}={query['token']}; Path=/; HttpOnly; "
                                  "SameSite=Strict")
            handler, params = server.routes.find(method, url.path)
            response = handler(Request(method, url.path, params, query, headers, body, self))
            if response is None:        # a websocket that already finished the exchange
                self.close_connection = True
                return
        except HttpError as exc:
            response = json_response({"error": exc.message, "detail": exc.message}, exc.status)
        except Exception as exc:       # a handler's bug: the client gets a 500, the log the trace
            log.exception("%s %s failed", method, url.path)
            response = json_response({"error": f"{type(exc).__name__}: {exc}"}, 500)
        self._send(response, set_cookie)

    def _send(self, response, set_cookie=None):
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            if set_cookie:
                self.send_header("Set-Cookie", set_cookie)
            for k, v in response.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class DashboardHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sock, routes, token=None, cookie_name="zray_dashboard_token"):
        # Take over a socket that is already bound and listening (the node daemon bound it, so
        # its port was known before this process started).
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        self.routes = routes
        self.token = token
        self.cookie_name = cookie_name


def listening_socket(host, port, fallback_to_free=True):
    """A TCP socket bound to (host, port) and listening; when the port is taken and
    `fallback_to_free`, a free port instead (several clusters may share a host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if not fallback_to_free or port == 0:
            sock.close()
            raise
        sock.bind((host, 0))
    sock.listen(128)
    return sock


# -- websocket (server side) ------------------------------------------------------------------
class WebSocket:
    """The server end of one websocket, upgraded from a request; text frames out, and a
    close frame (or a dead peer) noticed on read."""

    def __init__(self, handler):
        self._h = handler

    @classmethod
    def accept(cls, request):
        key = request.headers.get("sec-websocket-key")
        if request.headers.get("upgrade", "").lower() != "websocket" or not key:
            raise HttpError(400, "this endpoint speaks websocket only")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        h = request.connection
        h.send_response(101, "Switching Protocols")
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", accept)
        h.end_headers()
        h.wfile.flush()
        return cls(h)

    def send_text(self, text):
        self._send_frame(0x1, text.encode())

    def close(self, code=1000):
        try:
            self._send_frame(0x8, struct.pack("!H", code))
        except OSError:
            pass

    def peer_closed(self, timeout=0.0):
        """True when the client sent a close frame or went away."""
        sock = self._h.connection
        sock.settimeout(timeout)
        try:
            head = sock.recv(2, socket.MSG_PEEK)
        except (BlockingIOError, socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(None)
        return not head or (head[0] & 0x0F) == 0x8

    def _send_frame(self, opcode, data):
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < (1 << 16):
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self._h.wfile.write(header + data)
        self._h.wfile.flush()
