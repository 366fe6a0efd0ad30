"""The node plugin daemon, called over its real unix socket with the generated stubs as kubelet
calls it, against the devstack. Volumes land in real tmpfs mounts when the suite runs in a
private mount namespace (`make test`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest

from driver.csi.proto import csi_pb2
from driver.mounts import mount_points
from tests.fixtures.daemon import DaemonProcess

CLIENT_SECRET_MARK = "kvcreds-client-secret"
NON_FINAL = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


@pytest.fixture(scope="module")
def csi(
    tmp_path_factory: pytest.TempPathFactory, devstack: Any, mount_mode: str
) -> Iterator[DaemonProcess]:
    """One daemon shared by the tests that do not restart or signal it. Short deadlines keep the
    throttling and missing-identity cases quick; debug logging emits the request log lines."""
    daemon = DaemonProcess(
        tmp_path_factory.mktemp("csi"),
        devstack,
        mount_mode,
        ["--log-level", "debug", "--request-timeout", "1s", "--nmi-deadline", "1s"],
    )
    daemon.start()
    yield daemon
    daemon.stop()


def new_volume_id() -> str:
    return f"csi-{uuid.uuid4().hex}"


def call(rpc: Callable[..., Any], request: Any) -> tuple[grpc.StatusCode, str]:
    try:
        rpc(request, timeout=30)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def is_mounted(path: Path) -> bool:
    return os.path.realpath(path) in mount_points()


def assert_gone(target: Path) -> None:
    assert not is_mounted(target), f"{target} is still mounted"
    assert not target.exists(), f"{target} still exists"


def unpublish_request(volume_id: str, target: Path) -> csi_pb2.NodeUnpublishVolumeRequest:
    return csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target))


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
    code, _ = call(getattr(csi.node, method), request)
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
    code, details = call(csi.node.NodePublishVolume, request)
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
    code, details = call(csi.node.NodePublishVolume, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert key.lower() in details.lower()
    assert_gone(target)


# -- NodePublishVolume: errors from Key Vault, NMI and the devstack ------------------------------


def test_pod_without_access_gets_permission_denied(csi: DaemonProcess) -> None:
    target = csi.target("no-access")
    attrs = csi.pod_attributes(pod="no-access-pod")
    code, details = call(
        csi.node.NodePublishVolume, csi.publish_request(new_volume_id(), target, attrs)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED, details
    assert_gone(target)


def test_unknown_object_gets_not_found_naming_it(csi: DaemonProcess) -> None:
    target = csi.target("unknown-object")
    attrs = csi.pod_attributes(keyvaultobjectnames="no-such-secret")
    code, details = call(
        csi.node.NodePublishVolume, csi.publish_request(new_volume_id(), target, attrs)
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "no-such-secret" in details
    assert_gone(target)


def test_throttled_vault_gets_resource_exhausted(csi: DaemonProcess, clean_faults: Any) -> None:
    clean_faults.fault(vault="testkv", endpoint="keyvault", rate_429=1.0, retry_after=1)
    target = csi.target("throttled")
    code, details = call(
        csi.node.NodePublishVolume,
        csi.publish_request(new_volume_id(), target, csi.pod_attributes()),
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert code in NON_FINAL  # kubelet keeps the directory and retries
    assert_gone(target)


def test_pod_without_identity_gets_unavailable(csi: DaemonProcess) -> None:
    target = csi.target("no-identity")
    attrs = csi.pod_attributes(pod="pod-with-no-identity")
    code, details = call(
        csi.node.NodePublishVolume, csi.publish_request(new_volume_id(), target, attrs)
    )
    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert "pod-with-no-identity" in details
    assert_gone(target)


# -- NodePublishVolume / NodeUnpublishVolume end to end --------------------------------------------


def objects_yaml(*entries: dict[str, str]) -> str:
    lines = ["array:"]
    for entry in entries:
        lines.append("  - |")
        lines.extend(f"    {k}: {json.dumps(v)}" for k, v in entry.items())
    return "\n".join(lines) + "\n"


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_publish_end_to_end_writes_files_into_a_tmpfs_and_unpublish_leaves_nothing(
    csi: DaemonProcess, mount_mode: str
) -> None:
    target = csi.target("e2e")
    volume_id = new_volume_id()
    attrs = csi.pod_attributes(
        keyvaultobjectnames="secret1;key1;cert1", keyvaultobjecttypes="secret;key;cert"
    )
    csi.node.NodePublishVolume(csi.publish_request(volume_id, target, attrs), timeout=30)

    if mount_mode == "tmpfs":
        assert mount_points().get(os.path.realpath(target)) == "tmpfs"
    assert (target / "secret1").read_text() == "testkv-secret1-value"
    assert (target / "key1").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (target / "cert1").read_text().startswith("-----BEGIN CERTIFICATE-----")
    for name in ("secret1", "key1", "cert1"):
        assert file_mode(target / name) == 0o644, name
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("..")) == [
        "cert1",
        "key1",
        "secret1",
    ]

    csi.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=30)
    assert_gone(target)


def test_publish_with_objects_yaml_applies_file_permission(csi: DaemonProcess) -> None:
    target = csi.target("objects-yaml")
    volume_id = new_volume_id()
    attrs = csi.pod_attributes()
    del attrs["keyvaultobjectnames"], attrs["keyvaultobjecttypes"]
    attrs["objects"] = objects_yaml(
        {"objectName": "secret1", "objectType": "secret", "filePermission": "0600"},
        {"objectName": "cert1", "objectType": "cert", "objectAlias": "tls/cert.pem"},
    )
    csi.node.NodePublishVolume(csi.publish_request(volume_id, target, attrs), timeout=30)
    try:
        assert file_mode(target / "secret1") == 0o600
        assert file_mode(target / "tls" / "cert.pem") == 0o644
        assert (target / "tls" / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE")
    finally:
        csi.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=30)
    assert_gone(target)


def test_publish_twice_succeeds_with_the_same_files(csi: DaemonProcess) -> None:
    target = csi.target("idempotent")
    volume_id = new_volume_id()
    request = csi.publish_request(volume_id, target, csi.pod_attributes())
    csi.node.NodePublishVolume(request, timeout=30)
    first = (target / "secret1").read_text()
    csi.node.NodePublishVolume(request, timeout=30)
    assert (target / "secret1").read_text() == first == "testkv-secret1-value"
    assert [p.name for p in target.iterdir() if not p.name.startswith("..")] == ["secret1"]

    csi.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=30)
    csi.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=30)
    assert_gone(target)


def test_unpublish_of_a_missing_target_succeeds(csi: DaemonProcess) -> None:
    target = csi.target("never-published")
    csi.node.NodeUnpublishVolume(unpublish_request(new_volume_id(), target), timeout=30)
    assert_gone(target)


@pytest.mark.parametrize(
    "request_",
    [
        csi_pb2.NodeUnpublishVolumeRequest(target_path="/tmp/x"),
        csi_pb2.NodeUnpublishVolumeRequest(volume_id="csi-x"),
    ],
    ids=["no-volume-id", "no-target-path"],
)
def test_unpublish_without_volume_id_or_target_is_invalid_argument(
    csi: DaemonProcess, request_: csi_pb2.NodeUnpublishVolumeRequest
) -> None:
    code, _ = call(csi.node.NodeUnpublishVolume, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_publishes_of_one_volume_one_runs_the_other_is_aborted(
    csi: DaemonProcess, clean_faults: Any
) -> None:
    # Slow Key Vault answers keep the first call in flight while the second arrives.
    clean_faults.fault(vault="testkv", endpoint="keyvault", latency_ms=400)
    target = csi.target("concurrent")
    volume_id = new_volume_id()
    request = csi.publish_request(volume_id, target, csi.pod_attributes())
    barrier = threading.Barrier(2)
    codes: list[grpc.StatusCode] = []

    def publish() -> None:
        barrier.wait()
        codes.append(call(csi.node.NodePublishVolume, request)[0])

    threads = [threading.Thread(target=publish) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c.name for c in codes) == ["ABORTED", "OK"]
    assert (target / "secret1").read_text() == "testkv-secret1-value"
    csi.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=30)
    assert_gone(target)


def test_unpublish_during_a_publish_of_the_same_volume_is_aborted(
    csi: DaemonProcess, clean_faults: Any
) -> None:
    clean_faults.fault(vault="testkv", endpoint="keyvault", latency_ms=400)
    target = csi.target("unpublish-during-publish")
    volume_id = new_volume_id()
    request = csi.publish_request(volume_id, target, csi.pod_attributes())
    published = threading.Event()
    publish_codes: list[grpc.StatusCode] = []

    def publish() -> None:
        # kubelet retries an ABORTED call; so do we, in case an unpublish got in first.
        while True:
            code = call(csi.node.NodePublishVolume, request)[0]
            publish_codes.append(code)
            if code != grpc.StatusCode.ABORTED:
                break
        published.set()

    thread = threading.Thread(target=publish)
    thread.start()
    # Unpublish until one is refused while the publish is in flight; stop there, so no late
    # unpublish removes the volume after the publish completes.
    unpublish_codes: set[grpc.StatusCode] = set()
    while not published.is_set() and grpc.StatusCode.ABORTED not in unpublish_codes:
        unpublish = unpublish_request(volume_id, target)
        unpublish_codes.add(call(csi.node.NodeUnpublishVolume, unpublish)[0])
        published.wait(0.02)
    thread.join()
    assert publish_codes[-1] == grpc.StatusCode.OK
    assert grpc.StatusCode.ABORTED in unpublish_codes
    assert (target / "secret1").read_text() == "testkv-secret1-value"
    csi.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=30)
    assert_gone(target)


# -- secrets never reach the log -----------------------------------------------------------------


def test_log_never_contains_client_secrets_or_service_account_tokens(
    csi: DaemonProcess, devstack: Any
) -> None:
    client_secret = devstack.client_secret("kvcreds")
    assert client_secret  # the devstack's service principal secret
    sp_attrs = csi.pod_attributes()
    del sp_attrs["usePodIdentity"]
    sp_target = csi.target("sp-log")
    sp_id = new_volume_id()
    csi.node.NodePublishVolume(
        csi.publish_request(
            sp_id,
            sp_target,
            sp_attrs,
            secrets={"clientid": devstack.client_id("kvcreds"), "clientsecret": client_secret},
        ),
        timeout=30,
    )
    assert (sp_target / "secret1").read_text() == "testkv-secret1-value"

    sa_token = devstack.sa_token("default", "workload-sa")
    wi_attrs = csi.pod_attributes(clientID=devstack.client_id("workload"))
    del wi_attrs["usePodIdentity"]
    wi_attrs["csi.storage.k8s.io/serviceAccount.name"] = "workload-sa"
    wi_attrs["csi.storage.k8s.io/serviceAccount.tokens"] = json.dumps(
        {
            "api://AzureADTokenExchange": {
                "token": sa_token,
                "expirationTimestamp": "2099-01-01T00:00:00Z",
            }
        }
    )
    wi_target = csi.target("wi-log")
    wi_id = new_volume_id()
    csi.node.NodePublishVolume(csi.publish_request(wi_id, wi_target, wi_attrs), timeout=30)
    assert (wi_target / "secret1").read_text() == "testkv-secret1-value"

    # A failing publish logs its error too: it must not echo the secret either.
    bad = dict(sp_attrs, keyvaultobjectnames="no-such-secret")
    call(
        csi.node.NodePublishVolume,
        csi.publish_request(
            new_volume_id(),
            csi.target("sp-log-bad"),
            bad,
            secrets={"clientid": devstack.client_id("kvcreds"), "clientsecret": client_secret},
        ),
    )
    for volume_id, target in ((sp_id, sp_target), (wi_id, wi_target)):
        csi.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=30)

    log = csi.log()
    assert "NodePublishVolume" in log  # the debug request line was emitted
    assert client_secret not in log
    assert sa_token not in log
    # A JWT's signature alone would also be a leak.
    assert sa_token.rsplit(".", 1)[-1] not in log


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
    call(daemon.node.NodePublishVolume, daemon.publish_request(new_volume_id(), target, attrs))
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
