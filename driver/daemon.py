"""The node plugin process: gRPC servers, FlexVolume bridge, metrics/health, rotation."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from azcommon.errors import InvalidArgument, KvError
from driver.app import Core, build_core
from driver.config import Settings
from driver.csi.controller import placeholder_controller
from driver.csi.identity import IdentityService
from driver.csi.node import NodeService
from driver.csi.proto import csi_pb2, csi_pb2_grpc
from driver.csi.proto import pluginregistration_pb2_grpc as reg_grpc
from driver.csi.registration import RegistrationService
from driver.flexbridge import FlexBridge
from driver.provider import server as provider_server
from driver.statewatch import StateWatcher
from driver.volumes import VolumeRecord

log = logging.getLogger(__name__)


def plugin_version() -> str:
    try:
        return version("kv-driver")
    except PackageNotFoundError:
        return "0.0.0-dev"


def socket_path(endpoint: str) -> Path:
    """`unix:///csi/csi.sock` (or a bare path) -> /csi/csi.sock."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://") :]
    elif "://" in endpoint:
        raise InvalidArgument(f"--endpoint {endpoint!r}: only unix:// endpoints are supported")
    else:
        path = endpoint
    if not path:
        raise InvalidArgument("--endpoint has no socket path")
    return Path(path)


# sun_path holds 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


def serve_unix(server: grpc.Server, path: Path, mode: int = 0o660) -> None:
    """Bind a fresh socket (a stale one from a previous run is removed) with a tight mode."""
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        # grpc would only say "failed to bind"; name the real problem.
        raise InvalidArgument(
            f"socket path {path} is {size} bytes long; unix sockets allow at most "
            f"{MAX_SOCKET_PATH}: use a shorter directory"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    # grpc creates the socket when binding: tighten it before serving. (Changing the umask
    # instead would race other threads creating files, e.g. a publish in progress.)
    server.add_insecure_port(f"unix://{path}")
    path.chmod(mode)
    server.start()


class Daemon:
    def __init__(self, settings: Settings, core: Core) -> None:
        self.settings = settings
        self.core = core
        self.socket = socket_path(settings.endpoint)
        self.stopped = threading.Event()
        self.exit_code = 0
        self._grpc = grpc.server(
            ThreadPoolExecutor(max_workers=16, thread_name_prefix="csi"),
            options=[("grpc.so_reuseport", 0)],
        )
        node_id = settings.node_id or socket.gethostname()
        csi_pb2_grpc.add_IdentityServicer_to_server(
            IdentityService(settings.driver_name, plugin_version(), core.ledger.ready), self._grpc
        )
        csi_pb2_grpc.add_NodeServicer_to_server(NodeService(core.engine, node_id), self._grpc)
        # Not advertised; answers ControllerGetCapabilities for conformance tools (csi-sanity).
        self._grpc.add_generic_rpc_handlers((placeholder_controller(),))
        self._registration: grpc.Server | None = None
        self._reg_socket: Path | None = None
        self._bridge: FlexBridge | None = None
        self._provider: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._watcher = StateWatcher(core.ledger, core.upkeep)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        # Records load first (disk only, fast) so publishes see them; lost volumes are rebuilt
        # in the background once the sockets and /healthz answer, so a slow vault or NMI never
        # keeps kubelet or the liveness probe waiting.
        problems, lost = self.core.upkeep.reload()
        for problem in problems:
            log.warning("state: %s", problem)
        log.info(
            "loaded %d volumes from %s (%d to rebuild)",
            len(self.core.ledger),
            self.settings.state_dir,
            len(lost),
        )
        serve_unix(self._grpc, self.socket)
        log.info("CSI endpoint listening on %s", self.socket)
        if self.settings.flexvolume_socket:
            if self.core.pods is None:
                log.warning(
                    "INSECURE: --flexvolume-pod-source kubelet-options: FlexVolume pods are"
                    " trusted to name themselves, so a pod can write another pod's name in its"
                    " options and mount with that pod's identity; use it only without an API"
                    " server (tests, demos)"
                )
            self._bridge = FlexBridge(
                self.settings.flexvolume_socket, self.core.engine, self.core.pod_source
            )
            self._bridge.start()
            log.info("FlexVolume bridge listening on %s", self.settings.flexvolume_socket)
        if self.settings.provider_socket:
            self._start_provider(self.settings.provider_socket)
        if self.settings.metrics_addr:
            self._http = self._start_http(self.settings.metrics_addr)
        if self.settings.registration_dir:
            self._start_registration(self.settings.registration_dir)
        self._watcher.start()
        if lost:
            threading.Thread(
                target=self._rebuild, args=(lost,), name="kv-restore", daemon=True
            ).start()
        self.core.rotator.start()

    def _rebuild(self, lost: list[VolumeRecord]) -> None:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="kv-restore") as workers:
            problems = self.core.upkeep.recover_all(lost, workers)
        for problem in problems:
            log.warning("state: %s", problem)
        log.info("restore done: %d of %d volumes rebuilt", len(lost) - len(problems), len(lost))

    def _start_registration(self, directory: Path) -> None:
        endpoint = self.settings.kubelet_registration_path or str(self.socket)
        self._registration = grpc.server(ThreadPoolExecutor(max_workers=2))
        reg_grpc.add_RegistrationServicer_to_server(
            RegistrationService(self.settings.driver_name, endpoint, self._rejected),
            self._registration,
        )
        self._reg_socket = directory / f"{self.settings.driver_name}-reg.sock"
        serve_unix(self._registration, self._reg_socket, mode=0o600)
        log.info("registration socket %s advertises %s", self._reg_socket, endpoint)

    def _start_provider(self, path: Path) -> None:
        # Its own server and pool: the secrets-store driver's Mounts never queue behind
        # kubelet's CSI calls, nor the other way round.
        self._provider = grpc.server(
            ThreadPoolExecutor(max_workers=16, thread_name_prefix="provider"),
            options=[("grpc.so_reuseport", 0)],
        )
        provider_server.add_to_server(self._provider, self.core.provider, plugin_version())
        # Root-only, as provider-azure's socket: the secrets-store driver runs as root.
        serve_unix(self._provider, path, mode=0o600)
        log.info("secrets-store provider API listening on %s", path)

    def _rejected(self, reason: str) -> None:
        self.exit_code = 1
        self.stopped.set()

    def stop(self) -> None:
        self.core.rotator.stop()
        self._watcher.stop()
        if self._registration is not None:
            self._registration.stop(grace=1)
        if self._reg_socket is not None:
            self._reg_socket.unlink(missing_ok=True)  # deregisters the plugin
        if self._bridge is not None:
            self._bridge.stop()
        # Both gRPC servers drain their calls at the same time.
        provider_done = self._provider.stop(grace=5) if self._provider is not None else None
        self._grpc.stop(grace=5).wait()
        if provider_done is not None and self.settings.provider_socket is not None:
            provider_done.wait()
            self.settings.provider_socket.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self.core.close()

    # -- metrics and health ---------------------------------------------------------------------

    def probe(self) -> bool:
        """True when our own gRPC endpoint answers Probe with ready (and, when the provider
        socket is served, that socket answers Version)."""
        try:
            with grpc.insecure_channel(f"unix://{self.socket}") as channel:
                stub = csi_pb2_grpc.IdentityStub(channel)
                reply = stub.Probe(csi_pb2.ProbeRequest(), timeout=2)
                if not reply.ready.value:
                    return False
            if self.settings.provider_socket is not None:
                return provider_server.answers(self.settings.provider_socket)
            return True
        except grpc.RpcError:
            return False

    def _start_http(self, addr: str) -> ThreadingHTTPServer:
        host, _, port = addr.rpartition(":")
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body = generate_latest(daemon.core.metrics.registry)
                    self._send(200, body, CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = daemon.probe()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the log

        server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics and health on http://%s:%d", host or "0.0.0.0", server.server_port)
        return server


def run_daemon(settings: Settings) -> int:
    try:
        core = build_core(settings)
    except KvError as exc:
        log.error("start-up failed: %s", exc)
        return 2
    daemon = Daemon(settings, core)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        daemon.stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.start()
    except Exception:
        log.exception("start-up failed")
        daemon.stop()
        return 2
    daemon.stopped.wait()
    daemon.stop()
    log.info("stopped (exit %d)", daemon.exit_code)
    return daemon.exit_code
