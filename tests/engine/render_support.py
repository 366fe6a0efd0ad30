"""Material and readers shared by the rendering tests: certificates and chains built with
`cryptography`, and helpers that parse rendered output (never compare strings)."""

from __future__ import annotations

import base64
import datetime
import itertools
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from driver.keyvault.objects import KeyValue, SecretValue
from driver.keyvault.render import render
from driver.model import ObjectEncoding, ObjectFormat, ObjectSpec, ObjectType

PEM_CT = "application/x-pem-file"
PFX_CT = "application/x-pkcs12"
VERSION = "0123456789abcdef0123456789abcdef"


# --------------------------------------------------------------------------------------------
# Material


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    cn: str,
    public_key: PublicKeyTypes,
    signer_key: CertificateIssuerPrivateKeyTypes,
    issuer: x509.Certificate | None = None,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.subject if issuer else _name(cn))
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore[arg-type]
            critical=False,
        )
    )
    signer_public = (issuer.public_key() if issuer else public_key)  # fmt: skip
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public),  # type: ignore[arg-type]
        critical=False,
    )
    return builder.sign(signer_key, hashes.SHA256())


@dataclass(frozen=True)
class Chain:
    key: PrivateKeyTypes  # the leaf's private key
    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate

    @property
    def ordered(self) -> list[x509.Certificate]:
        return [self.leaf, self.intermediate, self.root]


def make_chain(leaf_key: PrivateKeyTypes, label: str) -> Chain:
    root_key = ec.generate_private_key(ec.SECP384R1())
    inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = make_cert(f"{label} root", root_key.public_key(), root_key, ca=True)
    inter = make_cert(f"{label} intermediate", inter_key.public_key(), root_key, root, ca=True)
    leaf = make_cert(f"{label}.example.com", leaf_key.public_key(), inter_key, inter)
    return Chain(leaf_key, leaf, inter, root)


def key_pem(key: PrivateKeyTypes, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def pfx_from(
    key: PrivateKeyTypes,
    cert: x509.Certificate,
    cas: list[x509.Certificate],
    encryption: serialization.KeySerializationEncryption | None = None,
) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"friendly",
        key,  # type: ignore[arg-type]
        cert,
        cas or None,
        encryption or serialization.NoEncryption(),
    )


def openssl_pfx(tmp: Path, chain: Chain, cas: list[x509.Certificate], style: str) -> bytes:
    """An empty-password PFX encrypted the way Key Vault and Windows write them. cryptography
    refuses empty passwords when encrypting, so the OpenSSL command line makes these."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available")
    (tmp / "key.pem").write_text(key_pem(chain.key, serialization.PrivateFormat.PKCS8))
    (tmp / "leaf.pem").write_text(cert_pem(chain.leaf))
    (tmp / "cas.pem").write_text("".join(cert_pem(c) for c in cas))
    algs = {
        "modern": ["-keypbe", "AES-256-CBC", "-certpbe", "AES-256-CBC", "-macalg", "sha256"],
        "legacy": ["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"],
    }[style]
    argv = [openssl, "pkcs12", "-export", "-inkey", str(tmp / "key.pem")]
    argv += ["-in", str(tmp / "leaf.pem"), "-passout", "pass:", *algs]
    if cas:
        argv += ["-certfile", str(tmp / "cas.pem")]
    out = subprocess.run(argv, check=True, capture_output=True).stdout
    info = subprocess.run(
        [openssl, "pkcs12", "-info", "-noout", "-passin", "pass:"],
        input=out,
        check=True,
        capture_output=True,
    ).stderr.decode()
    # Make sure the fixture really is what its name says.
    assert ("AES-256-CBC" in info) if style == "modern" else ("3-KeyTripleDES" in info)
    return out


# --------------------------------------------------------------------------------------------
# Reading results


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    text = data.decode("ascii")
    return [
        (m.group(1), m.group(0).encode())
        for m in re.finditer(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n?", text, re.S)
    ]


def fingerprints(certs: list[x509.Certificate]) -> list[bytes]:
    return [c.fingerprint(hashes.SHA256()) for c in certs]


def spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def split_rendered(data: bytes) -> tuple[list[PrivateKeyTypes], list[x509.Certificate]]:
    """Keys and certificates in file order; asserts keys come first and are PKCS#8."""
    keys: list[PrivateKeyTypes] = []
    certs: list[x509.Certificate] = []
    for label, block in pem_blocks(data):
        if label == "CERTIFICATE":
            certs.append(x509.load_pem_x509_certificate(block))
        else:
            assert label == "PRIVATE KEY", f"unexpected block {label}"
            assert not certs, "the private key must come before the certificates"
            keys.append(serialization.load_pem_private_key(block, None))
    assert b"".join(b for _, b in pem_blocks(data)) == data, "stray text outside PEM blocks"
    return keys, certs


def assert_key_and_chain(data: bytes, chain: Chain, extra: Sequence[x509.Certificate] = ()) -> None:
    keys, certs = split_rendered(data)
    assert len(keys) == 1
    assert spki(keys[0].public_key()) == spki(chain.key.public_key())
    assert spki(keys[0].public_key()) == spki(certs[0].public_key())
    assert fingerprints(certs) == fingerprints([*chain.ordered, *extra])
    for child, parent in itertools.pairwise(chain.ordered):
        child.verify_directly_issued_by(parent)


def obj(type_: ObjectType = ObjectType.SECRET, name: str = "web-tls", **kw: object) -> ObjectSpec:
    # Options as a user writes them; the parser turns them into these enums the same way.
    if "format" in kw:
        kw["format"] = ObjectFormat(str(kw["format"]).lower())
    if "encoding" in kw:
        kw["encoding"] = ObjectEncoding(str(kw["encoding"]).lower())
    return ObjectSpec(name=name, type=type_, **kw)  # type: ignore[arg-type]


def secret(value: str, content_type: str = "", version: str = VERSION) -> SecretValue:
    return SecretValue(version=version, value=value, content_type=content_type)


def render_data(spec: ObjectSpec, value: object) -> bytes:
    files = render(spec, [value])  # type: ignore[list-item]
    assert len(files) == 1
    assert files[0].path == spec.path
    assert files[0].mode == spec.mode
    return files[0].data


def assert_names_object(err: Exception, spec: ObjectSpec, version: str = VERSION) -> None:
    message = str(err)
    assert spec.name in message
    assert spec.type.value in message
    assert version in message


# --------------------------------------------------------------------------------------------
# Certificate-backed secrets: PKCS#12


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------------------------
# Keys


def int_bytes(value: int, size: int = 0) -> bytes:
    return value.to_bytes(size or (value.bit_length() + 7) // 8, "big")


def rsa_jwk(key: rsa.RSAPrivateKey, kty: str = "RSA") -> KeyValue:
    numbers = key.public_key().public_numbers()
    return KeyValue(version=VERSION, kty=kty, n=int_bytes(numbers.n), e=int_bytes(numbers.e))


def ec_jwk(crv: str, key: ec.EllipticCurvePrivateKey, kty: str = "EC") -> KeyValue:
    numbers = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    return KeyValue(
        version=VERSION,
        kty=kty,
        crv=crv,
        x=int_bytes(numbers.x, size),
        y=int_bytes(numbers.y, size),
    )


def load_spki(data: bytes) -> PublicKeyTypes:
    blocks = pem_blocks(data)
    assert [label for label, _ in blocks] == ["PUBLIC KEY"]
    return serialization.load_pem_public_key(data)
