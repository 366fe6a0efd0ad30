"""The shim and the daemon's FlexBridge together, over a real unix socket."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from azcommon.errors import NotFound, PermissionDenied, Unavailable
from devstack.harness.attributes import go_json
from devstack.harness.shim import ShimResult, run_shim
from driver.flexbridge import FlexBridge, flex_volume_id, pod_uid_from_path
from driver.pods import KubeletOptions
from tests.flexvolume.kubelet import CLIENT_SECRET, MOUNT_DIR, UID, kubelet_options
from tests.flexvolume.recording_engine import RecordingEngine


def mount(socket_path: Path, log_file: Path, target: str = MOUNT_DIR, **extra: str) -> ShimResult:
    return run_shim(
        ["mount", target, go_json(kubelet_options(**extra))], socket=socket_path, log=log_file
    )


def test_mount_hands_the_options_to_the_engine(
    bridge: FlexBridge, engine: RecordingEngine, log_file: Path
) -> None:
    result = mount(bridge.socket_path, log_file)
    assert result.reply == {"status": "Success"}
    [request] = engine.published
    assert dict(request.attributes) == kubelet_options()
    assert request.target_path == Path(MOUNT_DIR)
    assert request.source == "flexvolume"
    assert request.secrets == {}
    assert request.readonly is True
    assert request.volume_id.startswith(f"flex-{UID}-")


def test_unmount_uses_the_volume_id_of_the_mount(
    bridge: FlexBridge, engine: RecordingEngine, log_file: Path
) -> None:
    mount(bridge.socket_path, log_file)
    result = run_shim(["unmount", MOUNT_DIR], socket=bridge.socket_path, log=log_file)
    assert result.reply == {"status": "Success"}
    assert engine.unpublished == [(engine.published[0].volume_id, Path(MOUNT_DIR))]


def test_volume_id_is_stable_outside_kubelets_layout_too(
    bridge: FlexBridge, engine: RecordingEngine, log_file: Path
) -> None:
    target = "/srv/volumes/by-hand"
    assert mount(bridge.socket_path, log_file, target).status == "Success"
    assert run_shim(["unmount", target + "/"], socket=bridge.socket_path, log=log_file).status == (
        "Success"
    )
    assert engine.unpublished[0][0] == engine.published[0].volume_id


def test_json_split_across_argv_words_is_joined(
    bridge: FlexBridge, engine: RecordingEngine, log_file: Path
) -> None:
    # What an unquoted `$*` in a wrapper script does to values with spaces (upstream issue #123).
    options = kubelet_options(keyvaultobjectaliases="user name;db password")
    words = go_json(options).split(" ")
    assert len(words) == 3
    result = run_shim(["mount", MOUNT_DIR, *words], socket=bridge.socket_path, log=log_file)
    assert result.status == "Success"
    assert engine.published[0].attributes["keyvaultobjectaliases"] == "user name;db password"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionDenied("vault kv-demo: secret password: 403 Forbidden"), "PERMISSION_DENIED: "),
        (NotFound("vault kv-demo: secret password not found"), "NOT_FOUND: "),
        (Unavailable("NMI at 127.0.0.1:2579 not ready"), "UNAVAILABLE: "),
    ],
)
@pytest.mark.parametrize("call", ["mount", "unmount"])
def test_engine_errors_become_failures_with_code_and_message(
    call: str,
    error: Exception,
    expected: str,
    bridge: FlexBridge,
    engine: RecordingEngine,
    log_file: Path,
) -> None:
    engine.fail_with = error
    if call == "mount":
        result = mount(bridge.socket_path, log_file)
    else:
        result = run_shim(["unmount", MOUNT_DIR], socket=bridge.socket_path, log=log_file)
    assert result.status == "Failure"
    assert result.message == f"{expected}{error}"


def test_unexpected_engine_error_is_internal_and_quotes_nothing(
    bridge: FlexBridge, engine: RecordingEngine, log_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="driver.flexbridge")
    engine.fail_with = RuntimeError(f"clientsecret={CLIENT_SECRET}")
    result = mount(bridge.socket_path, log_file)
    assert result.status == "Failure"
    assert result.message.startswith("INTERNAL")
    assert CLIENT_SECRET not in result.message
    assert "RuntimeError" in caplog.text
    assert CLIENT_SECRET not in caplog.text
    assert kubelet_options()["kubernetes.io/secret/clientsecret"] not in caplog.text


def test_pod_uid_option_must_match_the_mount_dir(
    bridge: FlexBridge, engine: RecordingEngine, log_file: Path
) -> None:
    other = "0b0b0b0b-1111-2222-3333-444444444444"
    result = mount(bridge.socket_path, log_file, **{"kubernetes.io/pod.uid": other})
    assert result.status == "Failure"
    assert result.message.startswith("INVALID_ARGUMENT: ")
    assert other in result.message and UID in result.message
    assert engine.published == []


def test_socket_is_root_only(bridge: FlexBridge) -> None:
    info = os.stat(bridge.socket_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_stale_socket_is_replaced_at_start(
    socket_path: Path, engine: RecordingEngine, log_file: Path
) -> None:
    socket_path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
        old.bind(str(socket_path))  # left behind by a daemon that crashed
    with FlexBridge(socket_path, engine, KubeletOptions()):
        assert mount(socket_path, log_file).status == "Success"


def test_refuses_to_remove_a_file_that_is_not_a_socket(
    socket_path: Path, engine: RecordingEngine
) -> None:
    socket_path.parent.mkdir(parents=True)
    socket_path.write_text("not a socket")
    with pytest.raises(FileExistsError, match="not a unix socket"):
        FlexBridge(socket_path, engine, KubeletOptions()).start()
    assert socket_path.read_text() == "not a socket"


def test_stop_removes_the_socket_and_the_shim_then_says_unreachable(
    socket_path: Path, engine: RecordingEngine, log_file: Path
) -> None:
    bridge = FlexBridge(socket_path, engine, KubeletOptions())
    bridge.start()
    bridge.stop()
    assert not socket_path.exists()
    result = mount(socket_path, log_file)
    assert result.status == "Failure"
    assert "not reachable" in result.message
    bridge.stop()  # stopping twice is harmless


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))


def raw_call(path: Path, method: str, route: str, body: bytes | None) -> tuple[int, object]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request(method, route, body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "route", "body", "status"),
    [
        ("GET", "/v1/mount", None, 405),
        ("POST", "/v1/attach", b"{}", 404),
        ("POST", "/v1/mount", b"{not json", 400),
        ("POST", "/v1/mount", b'{"target": "/x"}', 400),
        ("POST", "/v1/mount", b'{"target": "/x", "options": {"a": 1}}', 400),
        ("POST", "/v1/unmount", b'{"target": "relative"}', 400),
    ],
)
def test_malformed_bridge_calls_get_a_flexvolume_failure(
    method: str,
    route: str,
    body: bytes | None,
    status: int,
    bridge: FlexBridge,
    engine: RecordingEngine,
) -> None:
    code, reply = raw_call(bridge.socket_path, method, route, body)
    assert code == status
    assert isinstance(reply, dict)
    assert reply["status"] == "Failure"
    assert "bad call to the FlexVolume bridge" in reply["message"]
    assert engine.published == [] and engine.unpublished == []


def read_request(conn: socket.socket) -> bytes:
    """Read one whole HTTP request (closing with unread input would reset the client)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return body


@pytest.fixture
def garbage_daemon(short_dir: Path) -> Iterator[Path]:
    """A socket whose server answers with something that is not a FlexVolume object."""
    path = short_dir / "garbage.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield path
    thread.join(timeout=10)
    server.close()


def test_an_invalid_answer_from_the_daemon_is_a_failure(
    garbage_daemon: Path, log_file: Path
) -> None:
    result = mount(garbage_daemon, log_file)
    assert result.status == "Failure"
    assert "invalid answer" in result.message


def test_flex_volume_id_is_stable_readable_and_distinct() -> None:
    assert flex_volume_id(UID, MOUNT_DIR) == flex_volume_id(UID, MOUNT_DIR + "/")
    assert flex_volume_id(UID, MOUNT_DIR).startswith(f"flex-{UID}-")
    assert flex_volume_id(UID, MOUNT_DIR) != flex_volume_id(UID, MOUNT_DIR + "2")
    assert flex_volume_id("", "/a/b").startswith("flex-")
    assert all(ch.isalnum() or ch == "-" for ch in flex_volume_id("../x y", "/a b/c"))


@pytest.mark.parametrize(
    ("mount_dir", "uid"),
    [
        (MOUNT_DIR, UID),
        (f"/data/kubelet/pods/{UID}/volumes/azure~kv/v", UID),  # a custom --root-dir
        (f"/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~secret/v", ""),
        ("/srv/volumes/by-hand", ""),
    ],
)
def test_pod_uid_is_read_from_kubelets_path(mount_dir: str, uid: str) -> None:
    assert pod_uid_from_path(mount_dir) == uid
