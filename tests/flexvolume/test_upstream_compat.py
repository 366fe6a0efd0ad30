"""Pod specs written for the upstream `azure/kv` driver, mounted through the real shim against a
running node plugin: what upstream resolved silently still mounts, with a warning in the log."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from devstack.harness import world
from devstack.harness.attributes import flex_options, go_json
from devstack.harness.daemon import DaemonProcess
from devstack.harness.node import flex_target
from devstack.harness.shim import ShimResult, run_shim
from tests.devstack.conftest import cert_client, key_client, secret_client, sp_credential


@pytest.fixture
def daemon(shared_daemon: DaemonProcess) -> DaemonProcess:
    return shared_daemon


def mount(daemon: DaemonProcess, names: list[str], types: list[str], **extra: str | None) -> Path:
    target = flex_target(daemon.root, str(uuid.uuid4()), "test", create=True)
    options = flex_options(
        daemon.devstack.nmi_port, names, types=types, uid=target.parts[-4], extra=extra
    )
    result = shim(daemon, "mount", str(target), go_json(options))
    assert result.status == "Success", result.message
    return target


def shim(daemon: DaemonProcess, *args: str) -> ShimResult:
    return run_shim(list(args), socket=daemon.flex_socket, log=daemon.root / "flex.log")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- item 14: precedence instead of refusal ----------------------------------------------------


def test_pod_identity_with_a_leftover_secret_ref_mounts_as_the_pod_and_warns(
    daemon: DaemonProcess,
) -> None:
    # A wrong secret: had the service principal been used, Entra ID would have refused it.
    target = mount(
        daemon,
        [world.SECRET],
        ["secret"],
        **{
            "kubernetes.io/secret/clientid": b64(daemon.devstack.client_id(world.SP_IDENTITY)),
            "kubernetes.io/secret/clientsecret": b64("leftover-wrong-secret"),
        },
    )
    assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
    log = daemon.log()
    assert "clientid/clientsecret in the volume's secret (service principal) ignored" in log
    assert "usepodidentity" in log and "takes precedence" in log
    assert "leftover-wrong-secret" not in log
    assert shim(daemon, "unmount", str(target)).status == "Success"


def test_pod_identity_with_vm_managed_identity_uses_the_pod_identity_and_warns(
    daemon: DaemonProcess,
) -> None:
    target = mount(
        daemon,
        [world.SECRET],
        ["secret"],
        usevmmanagedidentity="true",
        vmmanagedidentityclientid=daemon.devstack.client_id(world.VM_USER_IDENTITY),
    )
    assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
    assert 'usevmmanagedidentity: "true" ignored: usepodidentity: "true" takes precedence' in (
        daemon.log()
    )
    assert shim(daemon, "unmount", str(target)).status == "Success"


def test_vm_managed_identity_with_a_leftover_secret_ref_uses_the_vm_identity(
    daemon: DaemonProcess,
) -> None:
    target = mount(
        daemon,
        [world.SECRET],
        ["secret"],
        usepodidentity=None,
        usevmmanagedidentity="true",
        vmmanagedidentityclientid=daemon.devstack.client_id(world.VM_USER_IDENTITY),
        **{"kubernetes.io/secret/clientsecret": b64("leftover-wrong-secret")},
    )
    assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
    assert 'ignored: usevmmanagedidentity: "true" takes precedence' in daemon.log()
    assert shim(daemon, "unmount", str(target)).status == "Success"


# -- item 13: FlexVolume content stays what upstream wrote --------------------------------------


def stored(daemon: DaemonProcess, name: str) -> str:
    """The secret's value exactly as Key Vault stores it, read with the official SDK."""
    client = secret_client(daemon.devstack, sp_credential(daemon.devstack, world.SP_IDENTITY))
    return client.get_secret(name).value or ""


def test_flexvolume_files_are_the_bytes_the_azure_kv_driver_wrote(daemon: DaemonProcess) -> None:
    names = ["pfx-cert", world.CERT, world.KEY, world.CERT, "ec-key"]
    target = mount(
        daemon,
        names,
        ["secret", "secret", "key", "cert", "key"],
        keyvaultobjectaliases="pfx;pem-bundle;rsa-key;cert.der;ec-key",
    )
    # A PKCS#12-backed certificate's secret is its base64 PFX, as stored: what documented init
    # containers pipe through `base64 -d | openssl pkcs12`.
    pfx_text = (target / "pfx").read_text()
    assert pfx_text == stored(daemon, "pfx-cert")
    pkcs12.load_key_and_certificates(base64.b64decode(pfx_text), None)
    assert (target / "pem-bundle").read_text() == stored(daemon, world.CERT)
    # The RSA key: its JSON Web Key modulus, base64url without padding, as Key Vault sends it.
    credential = sp_credential(daemon.devstack, world.SP_IDENTITY)
    jwk = key_client(daemon.devstack, credential).get_key(world.KEY).key
    assert (target / "rsa-key").read_bytes() == base64.urlsafe_b64encode(jwk.n).rstrip(b"=")
    # The certificate: the DER leaf.
    cer = cert_client(daemon.devstack, credential).get_certificate(world.CERT).cer
    assert (target / "cert.der").read_bytes() == bytes(cer)
    # EC keys crashed the azure/kv driver: they get a PEM public key.
    assert isinstance(
        serialization.load_pem_public_key((target / "ec-key").read_bytes()),
        ec.EllipticCurvePublicKey,
    )
    assert shim(daemon, "unmount", str(target)).status == "Success"


def test_fileformat_pem_gives_a_flexvolume_our_pem_formats(daemon: DaemonProcess) -> None:
    target = mount(
        daemon,
        ["pfx-cert", world.KEY, world.CERT],
        ["secret", "key", "cert"],
        fileformat="pem",
    )
    bundle = (target / "pfx-cert").read_bytes()
    assert b"-----BEGIN PRIVATE KEY-----" in bundle
    assert len(x509.load_pem_x509_certificates(bundle)) > 1  # key + chain
    assert isinstance(
        serialization.load_pem_public_key((target / world.KEY).read_bytes()), rsa.RSAPublicKey
    )
    x509.load_pem_x509_certificate((target / world.CERT).read_bytes())
    assert shim(daemon, "unmount", str(target)).status == "Success"


def test_csi_keeps_pem_by_default_and_takes_fileformat_upstream(daemon: DaemonProcess) -> None:
    for fileformat, pem in (("", True), ("upstream", False)):
        volume_id = f"format-{uuid.uuid4().hex[:8]}"
        target = daemon.target(volume_id)
        attributes = daemon.pod_attributes(
            keyvaultobjectnames=world.CERT, keyvaultobjecttypes="cert", fileformat=fileformat
        )
        daemon.publish(volume_id, target, attributes)
        data = (target / world.CERT).read_bytes()
        assert data.startswith(b"-----BEGIN CERTIFICATE-----") is pem
        daemon.unpublish(volume_id, target)


def test_a_bad_fileformat_is_invalid_argument(daemon: DaemonProcess) -> None:
    target = flex_target(daemon.root, str(uuid.uuid4()), "test", create=True)
    options = flex_options(
        daemon.devstack.nmi_port, uid=target.parts[-4], extra={"fileformat": "der"}
    )
    result = shim(daemon, "mount", str(target), go_json(options))
    assert result.status == "Failure"
    assert result.message.startswith("INVALID_ARGUMENT") and "fileformat" in result.message
