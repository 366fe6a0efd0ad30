"""The node plugin daemon, called over its real unix socket with the generated stubs as kubelet
calls it, against the devstack: identity, node info, refused requests and the process lifecycle.
Successful publishes are in test_publish.py."""

from __future__ import annotations

import json
import signal
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest

from devstack.harness.csi_requests import status_of
from devstack.harness.daemon import DaemonProcess
from driver.csi.proto import csi_pb2
from tests.csi.support import NON_FINAL, assert_gone, new_volume_id

# -- Identity -----------------------------------------------------------------------------------


def test_get_plugin_info_names_the_driver_and_its_version(csi: DaemonProcess) -> None:
    info = csi.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=5)
    assert info.name == "kv.csi.azure.com"
    assert info.vendor_version


def test_plugin_capabilities_offer_no_controller_service(csi: DaemonProcess) -> None:
    caps = csi.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest(), timeout=5)
    services = [c.service.type for c in caps.capabilities if c.HasField("service")]
    assert csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE not in services


def test_probe_reports_ready(csi: DaemonProcess) -> None:
    reply = csi.identity.Probe(csi_pb2.ProbeRequest(), timeout=5)
    assert reply.HasField("ready") and reply.ready.value is True


# -- Node: info, capabilities, unsupported RPCs ---------------------------------------------------


def test_node_get_info_returns_the_node_id(csi: DaemonProcess) -> None:
    info = csi.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=5)
    assert info.node_id == "test-node"


def test_node_capabilities_offer_no_stage_stats_or_expand(csi: DaemonProcess) -> None:
    caps = csi.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest(), timeout=5)
    types = {c.rpc.type for c in caps.capabilities}
    rpc = csi_pb2.NodeServiceCapability.RPC
    assert not types & {rpc.STAGE_UNSTAGE_VOLUME, rpc.GET_VOLUME_STATS, rpc.EXPAND_VOLUME}


@pytest.mark.parametrize(
    ("method", "request_type"),
    [
        ("NodeStageVolume", csi_pb2.NodeStageVolumeRequest),
        ("NodeUnstageVolume", csi_pb2.NodeUnstageVolumeRequest),
        ("NodeGetVolumeStats", csi_pb2.NodeGetVolumeStatsRequest),
        ("NodeExpandVolume", csi_pb2.NodeExpandVolumeRequest),
    ],
)
def test_unsupported_node_rpcs_are_unimplemented(
    csi: DaemonProcess, method: str, request_type: Any
) -> None:
    request = request_type(volume_id="csi-x")
    code, _ = status_of(getattr(csi.node, method), request)
    assert code == grpc.StatusCode.UNIMPLEMENTED


# -- NodePublishVolume argument errors ---------------------------------------------------------


def _without(
    field: Literal["volume_id", "target_path", "volume_capability"],
) -> Callable[[csi_pb2.NodePublishVolumeRequest], None]:
    def edit(request: csi_pb2.NodePublishVolumeRequest) -> None:
        request.ClearField(field)

    return edit


def _block(request: csi_pb2.NodePublishVolumeRequest) -> None:
    request.volume_capability.block.SetInParent()  # oneof: replaces the mount access type


def _writable(request: csi_pb2.NodePublishVolumeRequest) -> None:
    request.readonly = False


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_without("volume_id"), "volume_id"),
        (_without("target_path"), "target_path"),
        (_without("volume_capability"), "volume_capability"),
        (_writable, "readonly"),
        (_block, "block"),
    ],
    ids=["no-volume-id", "no-target-path", "no-capability", "readonly-false", "block"],
)
def test_publish_rejects_bad_requests_with_invalid_argument(
    csi: DaemonProcess, edit: Callable[[csi_pb2.NodePublishVolumeRequest], None], named: str
) -> None:
    target = csi.target(f"bad-{named}")
    request = csi.publish_request(new_volume_id(), target, csi.pod_attributes())
    edit(request)
    code, details = status_of(csi.node.NodePublishVolume, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert named in details
    assert_gone(target)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"keyvaultobjecttypes": "secret;secret"}, "keyvaultobjecttypes"),
        ({"nmiport": "not-a-port"}, "nmiport"),
        ({"keyvaultName": ""}, "keyvaultName"),
        ({"keyvaultobjectnames": "../escape"}, "keyvaultobjectnames"),
    ],
    ids=["count-mismatch", "bad-port", "no-vault", "bad-name"],
)
def test_publish_rejects_bad_attributes_naming_the_key(
    csi: DaemonProcess, extra: dict[str, str], key: str
) -> None:
    target = csi.target(f"attr-{key}")
    request = csi.publish_request(new_volume_id(), target, csi.pod_attributes(**extra))
    code, details = status_of(csi.node.NodePublishVolume, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert key.lower() in details.lower()
    assert_gone(target)


# -- NodePublishVolume: errors from Key Vault, NMI and the devstack ------------------------------


def test_pod_without_access_gets_permission_denied(csi: DaemonProcess) -> None:
    target = csi.target("no-access")
    attrs = csi.pod_attributes(pod="no-access-pod")
    code, details = status_of(
        csi.node.NodePublishVolume, csi.publish_request(new_volume_id(), target, attrs)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED, details
    assert_gone(target)


def test_unknown_object_gets_not_found_naming_it(csi: DaemonProcess) -> None:
    target = csi.target("unknown-object")
    attrs = csi.pod_attributes(keyvaultobjectnames="no-such-secret")
    code, details = status_of(
        csi.node.NodePublishVolume, csi.publish_request(new_volume_id(), target, attrs)
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "no-such-secret" in details
    assert_gone(target)


def test_throttled_vault_gets_resource_exhausted(csi: DaemonProcess, clean_faults: Any) -> None:
    clean_faults.fault(vault="testkv", endpoint="keyvault", rate_429=1.0, retry_after=1)
    target = csi.target("throttled")
    code, details = status_of(
        csi.node.NodePublishVolume,
        csi.publish_request(new_volume_id(), target, csi.pod_attributes()),
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert code in NON_FINAL  # kubelet keeps the directory and retries
    assert_gone(target)


def test_pod_without_identity_gets_unavailable(csi: DaemonProcess) -> None:
    target = csi.target("no-identity")
    attrs = csi.pod_attributes(pod="pod-with-no-identity")
    code, details = status_of(
        csi.node.NodePublishVolume, csi.publish_request(new_volume_id(), target, attrs)
    )
    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert "pod-with-no-identity" in details
    assert_gone(target)


# -- process lifecycle ---------------------------------------------------------------------------


def test_stale_socket_is_replaced_with_a_private_socket_and_sigterm_cleans_up(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    root = tmp_path / "lifecycle"
    stale = root / "plugins" / "csi.sock"
    stale.parent.mkdir(parents=True)
    # A crashed run leaves its socket file behind; binding over it would fail.
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(stale))
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(str(stale))  # nobody listens on it any more

    daemon = start_daemon("--log-format", "json", root=root)
    mode = daemon.csi_socket.lstat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) & ~0o660 == 0, oct(stat.S_IMODE(mode))
    assert daemon.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=5).node_id

    assert daemon.stop(signal.SIGTERM) == 0
    assert not daemon.csi_socket.exists()


def test_json_log_format_writes_one_json_object_per_line(
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = start_daemon("--log-format", "json")
    target = daemon.target("json-log")
    attrs = daemon.pod_attributes(keyvaultobjectnames="no-such-secret")
    status_of(daemon.node.NodePublishVolume, daemon.publish_request(new_volume_id(), target, attrs))
    assert daemon.stop() == 0
    lines = [line for line in daemon.log().splitlines() if line.strip()]
    assert lines
    entries = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in entries)
    # The failed publish is reported with its volume, code and the object it could not find.
    failures = [e for e in entries if e["level"] == "warning" and "NodePublishVolume" in e["msg"]]
    assert any("NOT_FOUND" in e["msg"] and "no-such-secret" in e["msg"] for e in failures)


def test_too_long_socket_path_fails_start_up_with_a_clear_message(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    endpoint = tmp_path / ("d" * 120) / "csi.sock"
    daemon = start_daemon("--endpoint", f"unix://{endpoint}", wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=20) != 0
    assert "unix sockets allow at most 107" in daemon.log()
