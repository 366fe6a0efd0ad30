"""NMI's HTTP front door: routes, request parsing, and the one mapping of errors to answers.

Routes on the token port (matched in this order, any method, as upstream):

1. `/metadata/identity/oauth2/token` ("metadata" case-insensitive; prefix match): a pod's
   intercepted IMDS token request. `Metadata: true` is required (unless
   --metadata-header-required=false): else 400, JSON
   `{"error":"invalid_request","error_description":"Required metadata header not specified"}`.
   Query: `resource` (required), `client_id`, `msi_res_id` (or the older `mi_res_id`);
   `object_id` and `api-version` are ignored. The caller is the live pod whose IP is the source
   address. Success: 200 `application/json`, IMDS's token object with every number a string:
   `{"access_token","refresh_token":"","expires_in","expires_on","not_before","resource",
   "token_type":"Bearer"}`. Pods excepted by an AzurePodIdentityException are proxied to IMDS
   unchanged (they get the node's identities, as upstream).
2. Other spellings of that path (`/metadata/identity\\oauth2\\token`, ...): 400
   `Invalid request`, so they never reach IMDS behind NMI's back.
3. `/host/token` and `/host/token/`: node components (our driver, the secrets-store provider)
   ask for pod `podns`/`podname` (headers, both required: else 400 `missing 'podname' and
   'podns' from request header`). Only from 127.0.0.1 (else 403; upstream: 500). No Metadata
   header needed. Success: 200 `{"token": <the object above>, "clientid": "<clientID>"}`.
4. `/metadata/instance...` with --block-instance-metadata: 403
   `Request blocked by AAD Pod Identity NMI`.
5. Anything else: needs `Metadata: true` like 1, then proxied to IMDS (same method, path, query,
   headers and body; IMDS's status, headers and body back).

Errors (this module's `answer_for` is the one place that maps them):
- InvalidArgument 400; NotFound 404 (no identity for the pod, no pod with that address);
  FailedPrecondition 403 (host-network or ambiguous caller, unusable identity Secret);
  PermissionDenied/Unauthenticated 403 (IMDS or Entra ID refused the token, as upstream);
  `Pending` 503 with `Retry-After` (MIC is still assigning: the SDKs wait and retry; upstream
  answered 404 after up to 80 s); other Unavailable 503; anything else 500.
- Bodies: on the IMDS path JSON `{"error": ..., "error_description": ...}` like IMDS itself;
  on /host/token plain text `<message>\\n` like upstream. Messages never carry a token or secret.

Other listeners: `/healthz` (probe port): 200 `Active` once the nat rules are in place and the
caches synced, `Not Active` before. `/metrics` (Prometheus port): `aadpodidentity_*` series.
"""

from __future__ import annotations

import json
import logging
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import requests
from prometheus_client import Histogram

from azcommon.errors import (
    FailedPrecondition,
    InvalidArgument,
    KvError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from azcommon.log import log_unexpected
from podidentity.nmi.core import Issued, NmiCore, PassThrough
from podidentity.nmi.identities import Pending, Wanted

log = logging.getLogger(__name__)

TOKEN_PATH = re.compile(r"^/(?i:metadata)/identity/oauth2/token")
VARIANT_PATH = re.compile(r"^/(?i:metadata)/identity(.*?)oauth2(.*?)token", re.DOTALL)
HOST_PATH = re.compile(r"^/host/token")
INSTANCE_PATH = re.compile(r"^/(?i:metadata)/instance")
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host",
        "te", "trailer", "content-length"}  # fmt: skip

OPERATIONS = Histogram(
    "aadpodidentity_nmi_operations_duration_seconds",
    "NMI requests by route and answer",
    ["operation_type", "status_code", "namespace", "resource"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30),
)


def answer_for(error: BaseException) -> tuple[int, str, dict[str, str]]:
    """(status, message, extra headers) for an error: the one mapping place."""
    if isinstance(error, Pending):
        return 503, str(error), {"Retry-After": str(error.retry_after)}
    if isinstance(error, InvalidArgument):
        return 400, str(error), {}
    if isinstance(error, NotFound):
        return 404, str(error), {}
    if isinstance(error, (FailedPrecondition, PermissionDenied, Unauthenticated)):
        return 403, str(error), {}
    if isinstance(error, Unavailable):
        return 503, str(error), {}
    if isinstance(error, KvError):
        return 500, str(error), {}
    return 500, "internal error", {}


def _imds_error(status: int) -> str:
    return {400: "invalid_request", 404: "identity_not_found", 403: "forbidden",
            503: "temporarily_unavailable"}.get(status, "server_error")  # fmt: skip


class NmiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        core: NmiCore,
        *,
        imds_endpoint: str,
        session: requests.Session,
        metadata_header_required: bool = True,
        block_instance_metadata: bool = False,
        request_timeout: float = 10.0,
    ) -> None:
        super().__init__(address, NmiHandler)
        self.core = core
        self.imds = imds_endpoint.rstrip("/")
        self.session = session
        self.metadata_header_required = metadata_header_required
        self.block_instance_metadata = block_instance_metadata
        self.request_timeout = request_timeout

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="nmi-http", daemon=True)
        thread.start()
        return thread


class NmiHandler(BaseHTTPRequestHandler):
    server: NmiServer
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every kept-alive answer.
    disable_nagle_algorithm = True
    server_version = "kv-nmi"
    sys_version = ""
    methods: ClassVar[tuple[str, ...]] = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        return  # request lines go to metrics; a query could carry an identity id, not a secret

    def version_string(self) -> str:
        return self.server_version

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_") and name[3:] in self.methods:
            return self._dispatch
        raise AttributeError(name)

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        path = url.path
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self._namespace = ""
        proxied = not (TOKEN_PATH.match(path) or VARIANT_PATH.match(path) or HOST_PATH.match(path))
        if not proxied:
            self._drain()  # a body nobody reads would garble the next request on this connection
        if TOKEN_PATH.match(path):
            operation = "/metadata/identity/oauth2/token"
            status = self._pod_token(query)
        elif VARIANT_PATH.match(path):
            operation = "variant"
            status = self._text(400, "Invalid request")
        elif HOST_PATH.match(path):
            operation = "/host/token/"
            status = self._host_token(query)
        elif self.server.block_instance_metadata and INSTANCE_PATH.match(path):
            operation = "/metadata/instance"
            status = self._text(403, "Request blocked by AAD Pod Identity NMI")
        else:
            operation = "proxy"
            status = self._proxy() if self._metadata_ok() else self._metadata_missing()
        OPERATIONS.labels(
            operation, str(status), self._namespace, query.get("resource", "")
        ).observe(time.perf_counter() - started)

    # -- routes --------------------------------------------------------------------------------

    def _host_token(self, query: dict[str, str]) -> int:
        podns, podname = self.headers.get("podns", ""), self.headers.get("podname", "")
        if not podns or not podname:
            return self._text(400, "missing 'podname' and 'podns' from request header")
        if self.client_address[0] != "127.0.0.1":
            return self._text(403, "request remote address is not from a host")
        self._namespace = podns
        try:
            issued = self.server.core.host_token(
                podns, podname, query.get("resource", ""), _wanted(query), self._gone
            )
        except Exception as exc:
            return self._error(exc, json_body=False)
        return self._json(200, {
            "token": issued.token.imds_body(time.time()), "clientid": issued.identity.client_id,
        })  # fmt: skip

    def _pod_token(self, query: dict[str, str]) -> int:
        if not self._metadata_ok():
            return self._metadata_missing()
        try:
            answer = self.server.core.pod_token(
                self.client_address[0], query.get("resource", ""), _wanted(query), self._gone
            )
        except Exception as exc:
            return self._error(exc, json_body=True)
        if isinstance(answer, PassThrough):
            self._namespace = answer.pod.namespace
            return self._proxy()
        assert isinstance(answer, Issued)
        self._namespace = answer.pod.namespace
        return self._json(200, answer.token.imds_body(time.time()))

    def _proxy(self) -> int:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        try:
            reply = self.server.session.request(
                self.command, self.server.imds + self.path, headers=headers, data=body,
                timeout=self.server.request_timeout, allow_redirects=False,
            )  # fmt: skip
        except requests.RequestException as exc:
            return self._text(502, f"IMDS is unreachable ({type(exc).__name__})")
        content = reply.content
        self.send_response(reply.status_code)
        for key, value in reply.headers.items():
            if key.lower() not in _HOP and key.lower() != "content-encoding":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)
        return reply.status_code

    # -- helpers -------------------------------------------------------------------------------

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 1 << 20:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _metadata_ok(self) -> bool:
        return not self.server.metadata_header_required or self.headers.get("Metadata") == "true"

    def _metadata_missing(self) -> int:
        return self._json(400, {
            "error": "invalid_request",
            "error_description": "Required metadata header not specified",
        }, newline=True)  # fmt: skip

    def _gone(self) -> bool:
        """Whether the client closed its connection (EOF readable without blocking)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return peeked == b""
        except OSError:
            return True

    def _error(self, exc: BaseException, *, json_body: bool) -> int:
        status, message, headers = answer_for(exc)
        if status == 500 and not isinstance(exc, KvError):
            log_unexpected(log, "answering a token request", exc)
        elif status >= 500:
            log.warning("token request failed (%d): %s", status, message)
        else:
            log.info("token request refused (%d): %s", status, message)
        if json_body:
            payload = {"error": _imds_error(status), "error_description": message}
            return self._json(status, payload, headers=headers)
        return self._text(status, message, headers=headers)

    def _json(
        self,
        status: int,
        payload: Any,
        *,
        headers: dict[str, str] | None = None,
        newline: bool = False,
    ) -> int:
        body = json.dumps(payload, separators=(",", ":")) + ("\n" if newline else "")
        content_type = "application/json; charset=utf-8" if newline else "application/json"
        return self._send(status, body.encode(), content_type, headers)

    def _text(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> int:
        return self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8", headers)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None
    ) -> int:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass  # the client went away; nothing to tell it
        return status


def _wanted(query: dict[str, str]) -> Wanted:
    return Wanted(
        client_id=query.get("client_id", ""),
        resource_id=query.get("msi_res_id", "") or query.get("mi_res_id", ""),
    )


class ProbeServer(ThreadingHTTPServer):
    """`/healthz`: 200 always; the body says whether NMI is active."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], active: Callable[[], bool]) -> None:
        self.active = active
        super().__init__(address, _ProbeHandler)


class _ProbeHandler(BaseHTTPRequestHandler):
    server: ProbeServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/healthz":
            self.send_error(404)
            return
        body = b"Active" if self.server.active() else b"Not Active"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
