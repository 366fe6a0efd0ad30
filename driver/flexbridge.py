"""The daemon side of the FlexVolume bridge: the local endpoint the `azure~kv/kv` shim talks to.

kubelet executes the shim (flexvolume/azure~kv/kv) for every FlexVolume call; the shim forwards
`mount` and `unmount` here, and this turns them into the same engine requests as CSI, so both
kinds of volume share parsing, errors and rotation.

Protocol: HTTP/1.1 over a unix stream socket (`--flexvolume-socket`, by default
/run/kv-driver/flex.sock on the shim's side). The socket is mode 0600 and owned by the daemon's
user (root), so only root on the node (kubelet) can call it.

    POST /v1/mount     {"target": "<mount-dir>", "options": {"<key>": "<value>", ...}}
    POST /v1/unmount   {"target": "<mount-dir>"}

Request bodies are JSON (Content-Length required, at most 1 MiB). Every response body is exactly
the FlexVolume JSON object the shim prints: `{"status":"Success"}` or
`{"status":"Failure","message":"..."}`; the HTTP status is 200 for an answer of the engine
(success or failure), 400/404/405/411/413 for a malformed call. The mount call may take as long
as the engine needs (NMI identity assignment can take a minute); the shim waits up to 100 s.

Mount: `options` are kubelet's FlexVolume options, passed to the engine (pod identity verified, below) as the attributes of
a `PublishRequest(source="flexvolume")` (the user's options plus kubernetes.io/pod.*,
kubernetes.io/serviceAccount.name, kubernetes.io/readwrite, kubernetes.io/fsType and the base64
kubernetes.io/secret/* values). FlexVolume has no read-only requirement, so
`kubernetes.io/readwrite: rw` is accepted; the request is always `readonly=True` because the
files we write are read-only to the pod anyway.

Volume id: `flex_volume_id(pod_uid, mount_dir)`. kubelet's unmount call carries only the mount
dir, so the id is derived from what both calls know: the normalised mount dir (hashed) and the pod
uid parsed from kubelet's path `<kubelet-root>/pods/<uid>/volumes/azure~kv/<name>` (when the dir
has that shape; the uid makes the id readable). At mount, a `kubernetes.io/pod.uid` option that
disagrees with the uid in the path is rejected.

Pod identity: the options' `kubernetes.io/pod.*`, `serviceAccount.name` and fsGroup keys can be
written by the pod itself (kubelet applies the pod's options after its own), so a `PodSource`
(`driver.pods`) turns the options into the attributes the engine gets: with the API server, the
pod is looked up by the uid in the mount dir and options that disagree are refused.

Unmount always goes to the engine, which unmounts and removes the dir if it is there and succeeds
if it is absent, even for a dir it never mounted (kubelet retries unmounts after restarts).

Errors: `azcommon.errors.KvError` and anything unexpected are mapped by `azcommon.errors.flex_failure`
(the one mapping place). Unexpected errors are logged with their stack but without the exception
text, which could quote an option value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import socketserver
import stat
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

from azcommon.errors import InvalidArgument, KvError
from azcommon.log import log_unexpected
from driver.contract import PublishRequest, VolumeService
from driver.pods import PodSource

MAX_BODY = 1024 * 1024
POD_UID_KEY = "kubernetes.io/pod.uid"
# kubelet's layout for a FlexVolume of driver azure/kv: <root>/pods/<uid>/volumes/azure~kv/<name>
_KUBELET_PATH = re.compile(r"/pods/(?P<uid>[0-9A-Za-z-]{1,64})/volumes/azure~kv/[^/]+$")

Reply = dict[str, str]


def pod_uid_from_path(mount_dir: str) -> str:
    """The pod uid in a kubelet FlexVolume mount dir, or "" when the dir has another shape."""
    match = _KUBELET_PATH.search(normalise(mount_dir))
    return match.group("uid") if match else ""


def flex_volume_id(pod_uid: str, mount_dir: str) -> str:
    """The engine's volume id for a FlexVolume mount dir; the same at mount and at unmount.

    Both callers pass `pod_uid_from_path(mount_dir)` (unmount knows nothing else). The hash of the
    normalised dir makes the id unique; the uid, when known, makes it readable. Only
    [0-9A-Za-z-] characters, so the id is safe as a file name.
    """
    digest = hashlib.sha256(normalise(mount_dir).encode("utf-8")).hexdigest()[:24]
    uid = re.sub(r"[^0-9A-Za-z-]", "", pod_uid)[:64]
    return f"flex-{uid}-{digest}" if uid else f"flex-{digest}"


def normalise(mount_dir: str) -> str:
    # Lexical only: at unmount the dir may be gone, so symlinks cannot be resolved.
    return posixpath.normpath(mount_dir)


class FlexBridge:
    """Serves the shim's calls on `socket_path` and forwards them to `engine`."""

    def __init__(
        self,
        socket_path: Path,
        engine: VolumeService,
        pods: PodSource,
        logger: logging.Logger | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.engine = engine
        self.pods = pods
        self.log = logger or logging.getLogger(__name__)
        self._server: _UnixHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (0600), and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the FlexVolume bridge is already running")
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_socket(path)
        server = _UnixHTTPServer(str(path), self)
        try:
            # Bind, restrict, then listen: until listen() a connect is refused, so the socket is
            # never reachable with a wider mode (and no process-wide umask change is needed).
            server.server_bind()
            os.chmod(path, 0o600)
            self._inode = os.stat(path).st_ino
            server.server_activate()
        except BaseException:
            server.server_close()
            raise
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="flexbridge", kwargs={"poll_interval": 0.2}
        )
        self._thread.daemon = True
        self._thread.start()
        self.log.info("FlexVolume bridge listening on %s", path)

    def stop(self) -> None:
        """Stop accepting calls and remove the socket (only if it is still ours)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        try:
            if os.stat(self.socket_path).st_ino == self._inode:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self.log.info("FlexVolume bridge on %s stopped", self.socket_path)

    def __enter__(self) -> FlexBridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- calls -------------------------------------------------------------------------------

    def mount(self, target: str, options: Mapping[str, str]) -> Reply:
        path_uid = pod_uid_from_path(target)
        volume_id = flex_volume_id(path_uid, target)
        # The pod named in the options is what it claims to be, not yet verified.
        self.log.info(
            "flexvolume mount %s volume=%s option keys=%s",
            target,
            volume_id,
            ",".join(sorted(options)),
        )

        def publish() -> None:
            option_uid = options.get(POD_UID_KEY, "")
            if path_uid and option_uid and option_uid != path_uid:
                raise InvalidArgument(
                    f"{POD_UID_KEY} {option_uid!r} does not match the pod uid {path_uid!r} "
                    f"in the mount dir {target}"
                )
            # Before anything else runs (NMI above all): the pod's identity from a source the
            # pod cannot write, or a refusal.
            attributes = self.pods.attributes(target, path_uid, options)
            request = PublishRequest(
                volume_id=volume_id,
                target_path=Path(target),
                attributes=attributes,
                source="flexvolume",
                readonly=True,
            )
            self.engine.publish(request)

        return self._answer("mount", target, publish)

    def unmount(self, target: str) -> Reply:
        volume_id = flex_volume_id(pod_uid_from_path(target), target)
        self.log.info("flexvolume unmount %s volume=%s", target, volume_id)
        return self._answer(
            "unmount", target, lambda: self.engine.unpublish(volume_id, Path(target))
        )

    def _answer(self, call: str, target: str, work: Callable[[], object]) -> Reply:
        try:
            work()
        except KvError as err:
            reply = flex_failure(err)
            self.log.warning("flexvolume %s %s failed: %s", call, target, reply["message"])
            return reply
        except Exception as err:
            log_unexpected(self.log, f"flexvolume {call} {target}", err)
            return flex_failure(err)
        self.log.info("flexvolume %s %s succeeded", call, target)
        return {"status": "Success"}


def remove_stale_socket(path: Path) -> None:
    """Remove a socket left by an earlier run; refuse to delete anything that is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a unix socket; not removing it")
    os.unlink(path)


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, path: str, bridge: FlexBridge) -> None:
        self.bridge = bridge
        # Bound and activated by FlexBridge.start, which sets the mode in between.
        super().__init__(path, _Handler, bind_and_activate=False)


class _Handler(BaseHTTPRequestHandler):
    server: _UnixHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # for reading a request; the engine's own time is not bounded by it
    routes: ClassVar[frozenset[str]] = frozenset({"/v1/mount", "/v1/unmount"})

    def do_POST(self) -> None:
        if self.path not in self.routes:
            self._reply(HTTPStatus.NOT_FOUND, _protocol_failure(f"no such call {self.path!r}"))
            return
        body, problem, status = self._read_json()
        if body is None:
            self._reply(status, _protocol_failure(problem))
            return
        target = body.get("target")
        if not isinstance(target, str) or not target.startswith("/"):
            self._reply(
                HTTPStatus.BAD_REQUEST, _protocol_failure('"target" must be an absolute path')
            )
            return
        bridge = self.server.bridge
        if self.path == "/v1/unmount":
            self._reply(HTTPStatus.OK, bridge.unmount(target))
            return
        options = body.get("options")
        if not isinstance(options, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()
        ):
            self._reply(
                HTTPStatus.BAD_REQUEST,
                _protocol_failure('"options" must be an object of string values'),
            )
            return
        self._reply(HTTPStatus.OK, bridge.mount(target, options))

    def do_GET(self) -> None:
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, _protocol_failure("use POST"))

    def _read_json(self) -> tuple[dict[str, Any] | None, str, HTTPStatus]:
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            return None, "Content-Length is required", HTTPStatus.LENGTH_REQUIRED
        length = int(length_header)
        if length > MAX_BODY:
            return None, "request body too large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None, "request body is not JSON", HTTPStatus.BAD_REQUEST
        if not isinstance(body, dict):
            return None, "request body must be a JSON object", HTTPStatus.BAD_REQUEST
        return body, "", HTTPStatus.OK

    def _reply(self, status: HTTPStatus, reply: Reply) -> None:
        data = json.dumps(reply, separators=(",", ":")).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The shim gave up (kubelet killed it); the engine's work stands and kubelet retries.
            self.close_connection = True

    # The base class logs every request to stderr and reads client_address[0], which is empty
    # for unix sockets; our own log lines above say what matters.
    def log_message(self, format: str, *args: Any) -> None:
        self.server.bridge.log.debug("flexbridge: " + format, *args)

    def address_string(self) -> str:
        return "unix"


def flex_failure(error: BaseException) -> dict[str, str]:
    """The FlexVolume failure object for an error (the shim prints exactly this)."""
    if isinstance(error, KvError):
        return {"status": "Failure", "message": f"{error.code}: {error}"}
    return {"status": "Failure", "message": f"INTERNAL: unexpected {type(error).__name__}"}


def _protocol_failure(problem: str) -> Reply:
    return {"status": "Failure", "message": f"bad call to the FlexVolume bridge: {problem}"}
