"""Publishing through the running daemon over its real unix socket, as kubelet does, against the
devstack: files land in real tmpfs mounts when the suite runs in a private mount namespace
(`make test`); concurrent calls on one volume; secrets never reach the log."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest

from devstack.harness.csi_requests import status_of, unpublish_request
from devstack.harness.daemon import DaemonProcess
from driver.csi.proto import csi_pb2
from driver.mounts import mount_points
from tests.csi.support import assert_gone, new_volume_id

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
    code, _ = status_of(csi.node.NodeUnpublishVolume, request_)
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
        codes.append(status_of(csi.node.NodePublishVolume, request)[0])

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
            code = status_of(csi.node.NodePublishVolume, request)[0]
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
        unpublish_codes.add(status_of(csi.node.NodeUnpublishVolume, unpublish)[0])
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
    status_of(
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
