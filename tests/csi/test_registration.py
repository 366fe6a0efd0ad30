"""Plugin registration without the node-driver-registrar sidecar, exercised the way kubelet's
plugin watcher does it: find `<driver>-reg.sock`, GetInfo, dial the advertised endpoint,
NodeGetInfo, NotifyRegistrationStatus."""

from __future__ import annotations

import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from devstack.client import Devstack
from devstack.harness.daemon import DaemonProcess
from driver.csi.proto import csi_pb2, csi_pb2_grpc
from driver.csi.proto import pluginregistration_pb2 as reg_pb2
from driver.csi.proto import pluginregistration_pb2_grpc as reg_grpc

KUBELET_PATH = "/var/lib/kubelet/plugins/kv.csi.azure.com/csi.sock"


@pytest.fixture
def registering(devstack: Devstack, mount_mode: str) -> Iterator[DaemonProcess]:
    # A short root: pytest's tmp paths push `<dir>/kv.csi.azure.com-reg.sock` past the 107-byte
    # limit of a unix socket path (kubelet's /var/lib/kubelet/plugins_registry is short).
    root = Path(tempfile.mkdtemp(prefix="kvreg-"))
    daemon = DaemonProcess(
        root,
        devstack,
        mount_mode,
        [
            "--registration-dir",
            str(root / "plugins_registry"),
            "--kubelet-registration-path",
            KUBELET_PATH,
        ],
    )
    try:
        yield daemon.start()
    finally:
        daemon.stop()  # synchronously: its directory goes next
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def channel(path: Path) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"unix://{path}")
    try:
        yield ch
    finally:
        ch.close()


def find_registration_sockets(directory: Path) -> list[Path]:
    """What the plugin watcher does: every socket named *-reg.sock in the registry dir."""
    return sorted(p for p in directory.glob("*-reg.sock") if stat.S_ISSOCK(p.lstat().st_mode))


def test_plugin_watcher_registers_the_plugin(registering: DaemonProcess) -> None:
    sockets = find_registration_sockets(registering.registration_dir)
    assert [s.name for s in sockets] == ["kv.csi.azure.com-reg.sock"]
    # The registration socket is kubelet's alone (the registrar creates it with umask 0077).
    assert stat.S_IMODE(sockets[0].lstat().st_mode) & 0o077 == 0

    with channel(sockets[0]) as reg:
        info = reg_grpc.RegistrationStub(reg).GetInfo(reg_pb2.InfoRequest(), timeout=5)
    assert info.type == "CSIPlugin"
    assert info.name == "kv.csi.azure.com"
    assert info.endpoint == KUBELET_PATH
    assert list(info.supported_versions) == ["1.0.0"]

    # kubelet dials the advertised host path; in the DaemonSet that host directory is the
    # container's socket directory. Here it is the test's socket.
    host_to_test = {KUBELET_PATH: registering.csi_socket}
    with channel(host_to_test[info.endpoint]) as csi:
        plugin = csi_pb2_grpc.IdentityStub(csi).GetPluginInfo(
            csi_pb2.GetPluginInfoRequest(), timeout=5
        )
        node = csi_pb2_grpc.NodeStub(csi).NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=5)
    assert plugin.name == info.name  # kubelet checks they agree
    assert node.node_id == "test-node"

    with channel(sockets[0]) as reg:
        reg_grpc.RegistrationStub(reg).NotifyRegistrationStatus(
            reg_pb2.RegistrationStatus(plugin_registered=True), timeout=5
        )
    # Accepted: the plugin keeps serving.
    registering.wait_ready(timeout=5)
    assert registering.proc is not None and registering.proc.poll() is None
    assert "registered plugin kv.csi.azure.com" in registering.log()


def test_rejected_registration_exits_non_zero(registering: DaemonProcess) -> None:
    reg_sock = registering.registration_dir / "kv.csi.azure.com-reg.sock"
    with channel(reg_sock) as reg:
        try:
            reg_grpc.RegistrationStub(reg).NotifyRegistrationStatus(
                reg_pb2.RegistrationStatus(
                    plugin_registered=False, error="plugin name conflicts with another plugin"
                ),
                timeout=5,
            )
        except grpc.RpcError as err:
            # The process may be gone before the answer arrives; exiting is what matters.
            assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert registering.proc is not None
    assert registering.proc.wait(timeout=15) != 0
    assert "plugin name conflicts with another plugin" in registering.log()
    assert not reg_sock.exists()


def test_sigterm_removes_the_registration_socket(registering: DaemonProcess) -> None:
    reg_sock = registering.registration_dir / "kv.csi.azure.com-reg.sock"
    assert reg_sock.exists()
    assert registering.stop(signal.SIGTERM) == 0
    assert not reg_sock.exists()
    assert not registering.csi_socket.exists()


def test_without_registration_flags_no_registration_socket_is_served(
    shared_daemon: DaemonProcess,
) -> None:
    # Sidecar mode: node-driver-registrar owns the registry directory.
    assert find_registration_sockets(shared_daemon.registration_dir) == []
    assert list(shared_daemon.registration_dir.iterdir()) == []
    assert shared_daemon.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=5).node_id
