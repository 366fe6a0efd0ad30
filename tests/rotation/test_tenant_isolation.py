"""One tenant's unusable object stays in that tenant's volume: its publish is INVALID_ARGUMENT
and its rotation fails alone (counted, logged, old files kept), while every other volume on the
node keeps rotating."""

from __future__ import annotations

import datetime
import uuid

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.client import Devstack
from devstack.harness.csi_requests import publish_request, status_of
from driver.mounts import make_mounter
from tests.fixtures.daemon import StartDaemon
from tests.rotation.test_daemon_rotation import POLL, content, wait_for

PEM = "application/x-pem-file"


def pem_bundle(*, malformed_subject: bool) -> str:
    """A key and its self-signed certificate, as Key Vault stores a PEM-backed certificate.
    Malformed: the subject's UTF8String is not UTF-8, which parses only when it is read."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenant-cn")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenant-ca")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    if malformed_subject:
        der = der.replace(b"\x0c\x09tenant-cn", b"\x0c\x09\xff\xfenant-cn")
        x509.load_der_x509_certificate(der)  # still loads: the subject fails only when read
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    loaded = x509.load_der_x509_certificate(der)
    return (key_pem + loaded.public_bytes(serialization.Encoding.PEM)).decode()


def test_a_malformed_certificate_fails_only_its_own_volume(
    start_daemon: StartDaemon, devstack: Devstack
) -> None:
    daemon = start_daemon("--rotation-poll-interval", POLL)
    tag = uuid.uuid4().hex[:8]
    tenant_cert, other = f"tenantcert-{tag}", f"plain-{tag}"
    devstack.set_secret("testkv", tenant_cert, pem_bundle(malformed_subject=False), PEM)
    devstack.set_secret("testkv", other, "v1")

    # Publishing the malformed one is the tenant's own INVALID_ARGUMENT, not an INTERNAL error.
    bad_version = pem_bundle(malformed_subject=True)
    devstack.set_secret("testkv", f"{tenant_cert}-bad", bad_version, PEM)
    attrs = daemon.pod_attributes(keyvaultobjectnames=f"{tenant_cert}-bad")
    code, details = status_of(
        daemon.node.NodePublishVolume,
        publish_request("bad-now", daemon.target("bad-now"), attrs),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert f"{tenant_cert}-bad" in details and "malformed" in details

    # The tenant's volume first, so a cycle that stopped at it would never reach the others.
    tenant_target = daemon.target("tenant-pod")
    daemon.publish("tenant", tenant_target, daemon.pod_attributes(keyvaultobjectnames=tenant_cert))
    good_before = (tenant_target / tenant_cert).read_bytes()
    others = []
    for i in range(2):
        target = daemon.target(f"other-pod-{i}")
        daemon.publish(f"other-{i}", target, daemon.pod_attributes(keyvaultobjectnames=other))
        others.append(target)

    devstack.set_secret("testkv", tenant_cert, bad_version, PEM)
    devstack.set_secret("testkv", other, "v2")
    for target in others:
        assert wait_for(lambda t=target: content(t / other) == b"v2"), daemon.log()
    assert wait_for(
        lambda: (
            'kv_driver_rotation_failures_total{reason="swap:INVALID_ARGUMENT"}' in daemon.metrics()
        )
    ), daemon.metrics()
    assert (tenant_target / tenant_cert).read_bytes() == good_before  # old files kept
    assert "rotation of volume tenant failed" in daemon.log()
    assert "rotation cycle failed" not in daemon.log()


def test_a_malformed_certificate_does_not_stop_the_restore_of_other_volumes(
    start_daemon: StartDaemon, devstack: Devstack, mount_mode: str
) -> None:
    # Rotation off: only the restart's restore rebuilds anything.
    daemon = start_daemon("--rotation-poll-interval", "0")
    tag = uuid.uuid4().hex[:8]
    tenant_cert, other = f"restorecert-{tag}", f"restoreplain-{tag}"
    devstack.set_secret("testkv", tenant_cert, pem_bundle(malformed_subject=False), PEM)
    devstack.set_secret("testkv", other, "kept")
    tenant_target, other_target = daemon.target("r-tenant"), daemon.target("r-other")
    daemon.publish(
        "r-tenant", tenant_target, daemon.pod_attributes(keyvaultobjectnames=tenant_cert)
    )
    daemon.publish("r-other", other_target, daemon.pod_attributes(keyvaultobjectnames=other))
    daemon.kill()
    # The node lost every tmpfs (say the plugin's mounts went with its container), and the
    # tenant's certificate went bad meanwhile: the rebuild must fetch it again.
    devstack.set_secret("testkv", tenant_cert, pem_bundle(malformed_subject=True), PEM)
    for target in (tenant_target, other_target):
        make_mounter(mount_mode, "1m").release(target)
        target.mkdir(exist_ok=True)  # kubelet's directory for the pod is still there

    restarted = start_daemon("--rotation-poll-interval", "0", root=daemon.root)
    assert wait_for(lambda: content(other_target / other) == b"kept"), restarted.log()
    assert wait_for(lambda: "restore done: 1 of 2 volumes rebuilt" in restarted.log()), (
        restarted.log()
    )
    assert "r-tenant" in restarted.log() and "malformed" in restarted.log()
    assert not any(tenant_target.iterdir())
