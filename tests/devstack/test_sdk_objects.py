"""Secrets, keys and certificates through the official SDK with the admin identity: versions,
enable/disable, creation and import, and the links between a certificate and its backing
secret and key."""

from __future__ import annotations

import base64

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.certificates import CertificateContentType, CertificatePolicy
from azure.keyvault.keys import KeyCurveName
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from devstack import crypto
from devstack.client import Devstack
from devstack.seed import make_chain
from tests.devstack.conftest import admin_credential, cert_client, key_client, secret_client


def _spki(key: object) -> bytes:
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_set_secret_makes_a_new_version_and_latest_follows(devstack: Devstack, unique_name) -> None:
    client = secret_client(devstack, admin_credential(devstack))
    name = unique_name()
    first = client.set_secret(name, "one", content_type="text/plain")
    second = client.set_secret(name, "two")

    assert client.get_secret(name).value == "two"
    assert client.get_secret(name, first.properties.version).value == "one"
    assert first.properties.content_type == "text/plain"
    versions = {p.version for p in client.list_properties_of_secret_versions(name)}
    assert versions == {first.properties.version, second.properties.version}


def test_versions_are_paged_with_next_link(devstack: Devstack, unique_name) -> None:
    name = unique_name()
    made = {devstack.set_secret("testkv", name, f"v{i}") for i in range(30)}
    client = secret_client(devstack, admin_credential(devstack))
    pages = list(client.list_properties_of_secret_versions(name, max_page_size=7).by_page())
    assert len(pages) == 5
    assert {p.version for page in pages for p in page} == made


def test_disabled_version_gets_403_and_enable_restores_it(devstack: Devstack, unique_name) -> None:
    client = secret_client(devstack, admin_credential(devstack))
    name = unique_name()
    version = client.set_secret(name, "value").properties.version

    client.update_secret_properties(name, version, enabled=False)
    with pytest.raises(HttpResponseError) as info:
        client.get_secret(name, version)
    assert info.value.status_code == 403
    assert "disabled" in str(info.value)

    devstack.set_secret_enabled("testkv", name, version, True)
    assert client.get_secret(name, version).value == "value"


def test_admin_api_changes_are_seen_by_the_sdk(devstack: Devstack, unique_name) -> None:
    client = secret_client(devstack, admin_credential(devstack))
    name = unique_name()
    version = devstack.set_secret("testkv", name, "from-admin", content_type="text/x-test")
    got = client.get_secret(name)
    assert (got.value, got.properties.version, got.properties.content_type) == (
        "from-admin",
        version,
        "text/x-test",
    )
    devstack.delete_secret("testkv", name)
    with pytest.raises(HttpResponseError) as info:
        client.get_secret(name)
    assert info.value.status_code == 404


@pytest.mark.parametrize("curve", [KeyCurveName.p_256, KeyCurveName.p_384, KeyCurveName.p_521])
def test_create_and_get_ec_keys(devstack: Devstack, unique_name, curve: KeyCurveName) -> None:
    client = key_client(devstack, admin_credential(devstack))
    created = client.create_ec_key(unique_name(), curve=curve)
    got = client.get_key(created.name, created.properties.version)
    assert got.key.crv == curve
    size = {"P-256": 32, "P-384": 48, "P-521": 66}[str(curve.value)]
    assert len(got.key.x) == len(got.key.y) == size
    assert (
        got.id == f"{devstack.vault_url('testkv')}/keys/{created.name}/{created.properties.version}"
    )


def test_create_rsa_key(devstack: Devstack, unique_name) -> None:
    client = key_client(devstack, admin_credential(devstack))
    created = client.create_rsa_key(unique_name(), size=3072)
    assert len(client.get_key(created.name).key.n) == 384


def test_seeded_certificate_links_to_backing_secret_and_key(devstack: Devstack) -> None:
    credential = admin_credential(devstack)
    cert = cert_client(devstack, credential).get_certificate("cert1")
    version = cert.properties.version
    base = devstack.vault_url("testkv")
    assert cert.id == f"{base}/certificates/cert1/{version}"
    assert cert.secret_id == f"{base}/secrets/cert1/{version}"
    assert cert.key_id == f"{base}/keys/cert1/{version}"
    assert cert.properties.x509_thumbprint

    secret = secret_client(devstack, credential).get_secret("cert1")
    assert secret.properties.content_type == "application/x-pem-file"
    assert secret.properties.managed is True
    assert secret.properties.key_id == cert.key_id
    key = serialization.load_pem_private_key(secret.value.encode(), None)
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    assert _spki(key.public_key()) == _spki(leaf.public_key())

    backing_key = key_client(devstack, credential).get_key("cert1")
    assert backing_key.properties.managed is True
    assert backing_key.properties.version == version


def test_create_self_signed_certificate(devstack: Devstack, unique_name) -> None:
    client = cert_client(devstack, admin_credential(devstack))
    policy = CertificatePolicy(
        issuer_name="Self",
        subject="CN=created.example",
        content_type=CertificateContentType.pem,
        key_type="EC",
        key_curve_name="P-384",
        validity_in_months=6,
    )
    cert = client.begin_create_certificate(unique_name(), policy).result()
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    assert leaf.subject.rfc4514_string() == "CN=created.example"
    assert cert.policy.content_type == CertificateContentType.pem
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)


def test_import_pfx_with_chain_yields_pkcs12_backing_secret(
    devstack: Devstack, unique_name
) -> None:
    key = crypto.generate_key("RSA", 2048)
    chain = make_chain("CN=imported.example", key)
    pfx = pkcs12.serialize_key_and_certificates(
        b"imported", key, chain[0], chain[1:], serialization.BestAvailableEncryption(b"pw")
    )
    credential = admin_credential(devstack)
    name = unique_name()
    cert = cert_client(devstack, credential).import_certificate(
        name,
        pfx,
        password="pw",
        policy=CertificatePolicy(issuer_name="Unknown", content_type=CertificateContentType.pkcs12),
    )
    assert bytes(cert.cer) == crypto.cert_der(chain[0])

    secret = secret_client(devstack, credential).get_secret(name)
    assert secret.properties.content_type == "application/x-pkcs12"
    got_key, got_cert, got_extra = pkcs12.load_key_and_certificates(
        base64.b64decode(secret.value), None
    )
    assert got_key is not None and got_cert is not None
    assert _spki(got_key.public_key()) == _spki(key.public_key())
    assert [crypto.cert_der(c) for c in [got_cert, *got_extra]] == [
        crypto.cert_der(c) for c in chain
    ]


def test_import_pem_keeps_key_and_chain_order(devstack: Devstack, unique_name) -> None:
    key = crypto.generate_key("EC", curve="P-256")
    chain = make_chain("CN=pem.example", key)
    # Deliberately out of order: root first, leaf last.
    pem = crypto.private_key_pem(key) + b"".join(crypto.cert_pem(c) for c in reversed(chain))
    credential = admin_credential(devstack)
    name = unique_name()
    cert_client(devstack, credential).import_certificate(
        name,
        pem,
        policy=CertificatePolicy(issuer_name="Unknown", content_type=CertificateContentType.pem),
    )
    value = secret_client(devstack, credential).get_secret(name).value.encode()
    assert x509.load_pem_x509_certificates(value) == chain
    loaded = serialization.load_pem_private_key(value, None)
    assert _spki(loaded.public_key()) == _spki(key.public_key())


def test_seeded_pfx_certificate_has_three_certificate_chain(devstack: Devstack) -> None:
    secret = secret_client(devstack, admin_credential(devstack)).get_secret("pfx-cert")
    _, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert leaf is not None and leaf.subject.rfc4514_string() == "CN=pfx-cert"
    assert len(extra) == 2
    assert leaf.issuer == extra[0].subject and extra[0].issuer == extra[1].subject
