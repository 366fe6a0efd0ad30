"""The provider front door answers with the bytes provider-azure returns for the same objects:
each expectation here is provider-azure's own rendering rule (pkg/provider/provider.go, v1.8),
applied to what the official SDK reads from the vault. The one place we differ on purpose is a
documented provider-azure bug, pinned down by the last test."""

from __future__ import annotations

import base64
import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from devstack import crypto
from devstack.client import Devstack
from devstack.harness import world
from devstack.harness.provider import answer_files, answer_versions, mount_request, spc_attributes
from devstack.seed import make_chain
from tests.devstack.conftest import admin_credential, cert_client, key_client, secret_client
from tests.provider.conftest import ProviderDaemon

PEM = serialization.Encoding.PEM


def _parameters(devstack: Devstack, *entries: dict[str, str]) -> dict[str, str]:
    lines = ["array:"]
    for entry in entries:
        lines.append("  - |")
        lines.extend(f"    {k}: {json.dumps(v)}" for k, v in entry.items())
    return {
        "usePodIdentity": "true",
        "nmiport": str(devstack.nmi_port),
        "keyvaultName": world.VAULT,
        "tenantId": world.TENANT,
        "objects": "\n".join(lines) + "\n",
    }


def _leaf_to_root(leaf: x509.Certificate, others: list[x509.Certificate]) -> list[x509.Certificate]:
    """provider-azure's --construct-pem-chain (on by default): from the leaf, each next
    certificate is the issuer of the one before."""
    chain, rest = [leaf], list(others)
    while rest:
        issuer = next((c for c in rest if c.subject == chain[-1].issuer), None)
        if issuer is None:
            break
        chain.append(issuer)
        rest.remove(issuer)
    return chain + rest


def test_every_kind_is_what_provider_azure_writes(
    provider: ProviderDaemon, devstack: Devstack
) -> None:
    _, client = provider
    admin = admin_credential(devstack)
    secrets, keys, certs = (
        secret_client(devstack, admin),
        key_client(devstack, admin),
        cert_client(devstack, admin),
    )

    expected: dict[str, bytes] = {}
    # secret: the value, UTF-8.
    expected["secret1"] = secrets.get_secret("secret1").value.encode()
    # key: the public key, PEM "PUBLIC KEY" (PKIX), RSA and EC alike.
    jwk = keys.get_key("key1").key
    rsa_key = rsa.RSAPublicNumbers(
        int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")
    ).public_key()
    expected["key1"] = rsa_key.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = keys.get_key("ec-key").key
    ec_key = ec.EllipticCurvePublicNumbers(
        int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), ec.SECP256R1()
    ).public_key()
    expected["ec-key"] = ec_key.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # cert: the certificate (leaf only), PEM.
    expected["cert1"] = x509.load_der_x509_certificate(
        bytes(certs.get_certificate("cert1").cer)
    ).public_bytes(PEM)
    # A PKCS#12-backed secret: every key as PKCS#8 "PRIVATE KEY", then the certificates leaf
    # to root; with objectFormat pfx + objectEncoding base64, the PFX itself.
    pfx = base64.b64decode(secrets.get_secret("pfx-cert").value)
    key, leaf, others = pkcs12.load_key_and_certificates(pfx, None)
    assert key is not None and leaf is not None
    expected["pfx.pem"] = key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + b"".join(c.public_bytes(PEM) for c in _leaf_to_root(leaf, list(others)))
    expected["pfx.pfx"] = pfx

    params = _parameters(
        devstack,
        {"objectName": "secret1", "objectType": "secret"},
        {"objectName": "key1", "objectType": "key"},
        {"objectName": "ec-key", "objectType": "key"},
        {"objectName": "cert1", "objectType": "cert"},
        {"objectName": "pfx-cert", "objectType": "secret", "objectAlias": "pfx.pem"},
        {
            "objectName": "pfx-cert",
            "objectType": "secret",
            "objectAlias": "pfx.pfx",
            "objectFormat": "pfx",
            "objectEncoding": "base64",
        },
    )
    answer = client.mount(mount_request(spc_attributes(params)))
    files = answer_files(answer)
    assert {path: data for path, (_, data) in files.items()} == expected
    assert {mode for mode, _ in files.values()} == {0o644}
    # Versions: the version of each object's id in the vault.
    versions = answer_versions(answer)
    assert versions["secret/secret1"] == secrets.get_secret("secret1").properties.version
    assert versions["key/key1"] == keys.get_key("key1").properties.version
    assert versions["cert/cert1"] == certs.get_certificate("cert1").properties.version


def test_a_pem_certificate_stored_out_of_order_is_ordered_unlike_provider_azure(
    provider: ProviderDaemon, devstack: Devstack
) -> None:
    """A certificate kept as a plain PEM secret (content type application/x-pem-file, as App
    Service exports them) in upload order: provider-azure returns it verbatim, so servers fail
    with "key values mismatch" (provider-azure #103, #747, #1952). We write the same key and
    certificates in the order servers need: the key, then the chain leaf to root."""
    _, client = provider
    key = crypto.generate_key("RSA", size=2048)
    chain = make_chain("CN=provider-order.example", key)
    stored = b"".join(crypto.cert_pem(c) for c in reversed(chain)) + crypto.private_key_pem(key)
    name = "provider-out-of-order"
    devstack.set_secret(world.VAULT, name, stored.decode(), content_type="application/x-pem-file")
    verbatim = secret_client(devstack, admin_credential(devstack)).get_secret(name).value.encode()
    assert verbatim == stored  # what provider-azure would have written

    params = _parameters(devstack, {"objectName": name, "objectType": "secret"})
    ours = answer_files(client.mount(mount_request(spc_attributes(params))))[name][1]

    assert ours == crypto.private_key_pem(key) + b"".join(crypto.cert_pem(c) for c in chain)
    assert x509.load_pem_x509_certificates(ours) == chain  # leaf, intermediate, root
