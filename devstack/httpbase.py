"""The HTTP plumbing every devstack server shares: a threaded HTTP/1.1 keep-alive server
(optionally TLS, with the handshake done in the connection's own thread), request parsing,
fault injection, counting, and turning every failure into a JSON error instead of a traceback."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from devstack.faults import Counters, FaultTable, Outcome

log = logging.getLogger("devstack")

MAX_BODY_BYTES = 4 * 1024 * 1024
NO_FAULT = Outcome(0.0, "pass", 0)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_ip: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The JSON body; raises ValueError when it is not JSON."""
        if not self.body.strip():
            raise ValueError("the request body is empty")
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, json.dumps(payload).encode(), headers=list(headers or []))


def text_response(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode(), content_type="text/plain; charset=utf-8")


def kv_error(status: int, code: str, message: str, inner: str | None = None) -> Response:
    """Key Vault's error shape: {"error": {"code", "message", "innererror"?}}."""
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return json_response(status, {"error": error})


@dataclass(frozen=True)
class Route:
    """What a request is, for counting and fault matching."""

    vault: str | None
    operation: str
    endpoint: str  # keyvault | token | imds | nmi | admin


class App(Protocol):
    def classify(self, request: Request) -> Route: ...

    def handle(self, request: Request, route: Route) -> Response: ...

    def throttled(self, route: Route, retry_after: int) -> Response: ...

    def unavailable(self, route: Route) -> Response: ...

    def internal_error(self, route: Route) -> Response: ...


class DevServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # benchmarks open many connections at once

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        faults: FaultTable,
        counters: Counters,
        tls: ssl.SSLContext | None = None,
        name: str = "server",
    ) -> None:
        self.app = app
        self.faults = faults
        self.counters = counters
        self.tls = tls
        self.name = name
        super().__init__(address, Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            Handler(request, client_address, self)
            return
        # Handshake here, in the connection's thread, so a slow client cannot stall accept().
        request.settimeout(10)
        try:
            tls_sock = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("%s: TLS handshake with %s failed: %s", self.name, client_address, exc)
            return
        try:
            tls_sock.settimeout(None)
            Handler(tls_sock, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls_sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: connection from %s ended with an error", self.name, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each response would wait for
    # the client's delayed ACK (~40 ms), which the real service does not do.
    disable_nagle_algorithm = True
    server_version = "devstack"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this long
    server: DevServer

    def version_string(self) -> str:
        return "devstack"

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Protocol-level errors (bad request line, oversized headers) in the JSON error shape
        # rather than the standard library's HTML page.
        self.close_connection = True
        codes = {
            400: "BadParameter",
            404: "NotFound",
            405: "MethodNotAllowed",
            501: "NotImplemented",
        }
        self._send(kv_error(code, codes.get(code, "BadRequest"), message or "Bad request."))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: %s", self.server.name, format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes | None:
        """The request body; None when it is too large. ValueError on broken framing."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        app = self.server.app
        route = Route(None, "unknown", "admin")
        try:
            try:
                body = self._read_body()
            except ValueError:
                self.close_connection = True
                self._send(kv_error(400, "BadParameter", "The request body framing is invalid."))
                return
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                query={k: v for k, v in parse_qsl(parts.query, keep_blank_values=True)},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body or b"",
                client_ip=str(self.client_address[0]),
            )
            route = app.classify(request)
            outcome = (
                NO_FAULT
                if route.endpoint == "admin"
                else self.server.faults.decide(route.vault, route.endpoint)
            )
            if outcome.latency_s > 0:
                time.sleep(outcome.latency_s)
            if outcome.action == "drop":
                self.server.counters.record(route.vault, route.operation, 0)
                self._drop()
                return
            if outcome.action == "429":
                response = app.throttled(route, outcome.retry_after)
            elif outcome.action == "503":
                response = app.unavailable(route)
            elif body is None:
                response = kv_error(413, "BadParameter", "The request body is too large.")
            else:
                response = app.handle(request, route)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except Exception:
            log.exception(
                "%s: %s %s failed", self.server.name, self.command, self.path.split("?")[0]
            )
            response = app.internal_error(route)
        if route.endpoint != "admin":
            self.server.counters.record(route.vault, route.operation, response.status)
        self._send(response)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def serve_in_thread(server: DevServer) -> Callable[[], None]:
    """Start serving on a daemon thread; returns a function that stops the server."""
    import threading

    thread = threading.Thread(target=server.serve_forever, name=server.name, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
