"""Rendering fetched Key Vault objects into file contents, checked by parsing the output with
`cryptography` (public numbers, fingerprints, order), never by comparing strings."""

from __future__ import annotations

import base64
import datetime
import itertools
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from azcommon.errors import FailedPrecondition, Internal, InvalidArgument
from driver.keyvault.objects import CertValue, KeyValue, SecretValue
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


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module", params=["P-256", "P-384", "P-521"])
def ec_key(request: pytest.FixtureRequest) -> tuple[str, ec.EllipticCurvePrivateKey]:
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
    return request.param, ec.generate_private_key(curve[request.param])


@pytest.fixture(scope="module")
def rsa_chain(rsa_key: rsa.RSAPrivateKey) -> Chain:
    return make_chain(rsa_key, "rsa")


@pytest.fixture(scope="module")
def ec_chain() -> Chain:
    return make_chain(ec.generate_private_key(ec.SECP256R1()), "ec")


@pytest.fixture(scope="module", params=["rsa", "ec"])
def chain(request: pytest.FixtureRequest, rsa_chain: Chain, ec_chain: Chain) -> Chain:
    return rsa_chain if request.param == "rsa" else ec_chain


@pytest.fixture(scope="module")
def stranger() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return make_cert("unrelated root", key.public_key(), key, ca=True)


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
# Plain secrets and objectEncoding


def test_utf8_secret_is_written_as_utf8_bytes() -> None:
    value = "pässwörd ✓ with spaces\nand a newline"
    assert render_data(obj(), secret(value)) == value.encode("utf-8")


@pytest.mark.parametrize(
    "stored",
    [
        "AAECAwT/",  # padded
        "AAECAwT/\n",
        "AAEC\nAwT/",  # wrapped lines as `base64` writes them
        "  AAECAwT/  ",
    ],
)
def test_base64_secret_is_decoded(stored: str) -> None:
    spec = obj(name="blob", encoding="base64")
    assert render_data(spec, secret(stored)) == bytes([0, 1, 2, 3, 4, 255])


@pytest.mark.parametrize(
    ("stored", "raw"), [("AAE", b"\x00\x01"), ("AA", b"\x00"), ("AA=", b"\x00")]
)
def test_base64_without_padding_is_accepted(stored: str, raw: bytes) -> None:
    assert render_data(obj(name="blob", encoding="base64"), secret(stored)) == raw


@pytest.mark.parametrize("stored", ["hunter2-is-not-base64!", "QUJD_-", "QUJDR", "QUJD€"])
def test_invalid_base64_fails_without_leaking_the_value(stored: str) -> None:
    spec = obj(name="blob", encoding="base64")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(stored)])
    assert_names_object(info.value, spec)
    assert "base64" in str(info.value)
    assert stored not in str(info.value)
    assert info.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize("stored", ["00ff10ab", "00FF10AB", "00 ff 10 ab", "00ff\n10ab\n"])
def test_hex_secret_is_decoded(stored: str) -> None:
    assert render_data(obj(name="h", encoding="hex"), secret(stored)) == b"\x00\xff\x10\xab"


@pytest.mark.parametrize("stored", ["s3cr3tzz", "f0f0f", "0x00ff"])
def test_invalid_hex_fails_without_leaking_the_value(stored: str) -> None:
    spec = obj(name="h", encoding="hex")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(stored)])
    assert_names_object(info.value, spec)
    assert "hex" in str(info.value)
    assert stored not in str(info.value)


def test_text_that_is_not_encodable_as_utf8_is_rejected() -> None:
    # JSON may carry a lone surrogate ("\ud800"); it has no UTF-8 form.
    spec = obj(name="odd")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret("top\ud800secret")])
    assert_names_object(info.value, spec)
    assert "top" not in str(info.value)


def test_plain_secret_with_pfx_format_is_decoded_per_encoding(rsa_chain: Chain) -> None:
    # A PFX uploaded as a plain secret (no certificate content type) is just bytes to us.
    pfx = pfx_from(rsa_chain.key, rsa_chain.leaf, [])
    spec = obj(name="raw-pfx", format="pfx", encoding="base64")
    assert render_data(spec, secret(base64.b64encode(pfx).decode())) == pfx


# --------------------------------------------------------------------------------------------
# Certificate-backed secrets: PEM


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("key_at", [0, 1, 3])
def test_pem_bundle_is_reordered_leaf_to_root_with_key_first(
    chain: Chain, order: tuple[int, ...], key_at: int
) -> None:
    parts = [cert_pem(chain.ordered[i]) for i in order]
    parts.insert(key_at, key_pem(chain.key, serialization.PrivateFormat.PKCS8))
    for fmt in ("", "pem"):
        data = render_data(obj(format=fmt), secret("".join(parts), PEM_CT))
        assert_key_and_chain(data, chain)


def test_pem_bundle_accepts_traditional_key_formats_and_writes_pkcs8(chain: Chain) -> None:
    stored = key_pem(chain.key, serialization.PrivateFormat.TraditionalOpenSSL)
    assert "BEGIN PRIVATE KEY" not in stored  # RSA PRIVATE KEY / EC PRIVATE KEY
    stored = cert_pem(chain.root) + stored + cert_pem(chain.leaf) + cert_pem(chain.intermediate)
    assert_key_and_chain(render_data(obj(), secret(stored, PEM_CT)), chain)


def test_certificates_outside_the_chain_are_kept_after_it(
    rsa_chain: Chain, stranger: x509.Certificate
) -> None:
    stored = "".join(
        [
            cert_pem(stranger),
            cert_pem(rsa_chain.root),
            key_pem(rsa_chain.key, serialization.PrivateFormat.PKCS8),
            cert_pem(rsa_chain.leaf),
            cert_pem(rsa_chain.intermediate),
        ]
    )
    assert_key_and_chain(render_data(obj(), secret(stored, PEM_CT)), rsa_chain, [stranger])


def test_duplicate_certificates_are_written_once(rsa_chain: Chain) -> None:
    stored = "".join(
        [key_pem(rsa_chain.key, serialization.PrivateFormat.PKCS8)]
        + [cert_pem(c) for c in (rsa_chain.root, rsa_chain.leaf, rsa_chain.root)]
        + [cert_pem(rsa_chain.intermediate)]
    )
    assert_key_and_chain(render_data(obj(), secret(stored, PEM_CT)), rsa_chain)


def test_chain_follows_signatures_not_just_names(rsa_chain: Chain) -> None:
    # A second "intermediate" with the same subject but another key did not sign the leaf.
    decoy_key = ec.generate_private_key(ec.SECP256R1())
    decoy = make_cert("rsa intermediate", decoy_key.public_key(), decoy_key, issuer=None, ca=True)
    stored = "".join(
        [
            cert_pem(decoy),
            cert_pem(rsa_chain.root),
            cert_pem(rsa_chain.intermediate),
            cert_pem(rsa_chain.leaf),
            key_pem(rsa_chain.key, serialization.PrivateFormat.PKCS8),
        ]
    )
    assert_key_and_chain(render_data(obj(), secret(stored, PEM_CT)), rsa_chain, [decoy])


def test_pem_bundle_without_key_still_orders_the_chain(chain: Chain) -> None:
    stored = "".join(cert_pem(c) for c in (chain.intermediate, chain.root, chain.leaf))
    keys, certs = split_rendered(render_data(obj(), secret(stored, PEM_CT)))
    assert keys == []
    assert fingerprints(certs) == fingerprints(chain.ordered)


def test_content_type_is_matched_case_insensitively_with_parameters(chain: Chain) -> None:
    stored = cert_pem(chain.root) + cert_pem(chain.leaf) + cert_pem(chain.intermediate)
    stored += key_pem(chain.key, serialization.PrivateFormat.PKCS8)
    value = secret(stored, "Application/X-PEM-File; charset=utf-8")
    assert_key_and_chain(render_data(obj(), value), chain)


def test_encoding_does_not_apply_to_pem_output(chain: Chain) -> None:
    stored = key_pem(chain.key, serialization.PrivateFormat.PKCS8) + cert_pem(chain.leaf)
    stored += cert_pem(chain.root) + cert_pem(chain.intermediate)
    for encoding in ("base64", "hex"):
        data = render_data(obj(encoding=encoding), secret(stored, PEM_CT))
        assert_key_and_chain(data, chain)


def test_private_key_that_matches_no_certificate_is_rejected(
    rsa_chain: Chain, ec_chain: Chain
) -> None:
    stored = key_pem(ec_chain.key, serialization.PrivateFormat.PKCS8)
    stored += "".join(cert_pem(c) for c in rsa_chain.ordered)
    spec = obj()
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(stored, PEM_CT)])
    assert_names_object(info.value, spec)
    assert "does not match" in str(info.value)
    assert "PRIVATE KEY-----" not in str(info.value)


def test_encrypted_private_key_is_rejected(rsa_chain: Chain) -> None:
    encrypted = rsa_chain.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    spec = obj()
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(encrypted + cert_pem(rsa_chain.leaf), PEM_CT)])
    assert_names_object(info.value, spec)
    assert "encrypted" in str(info.value)


@pytest.mark.parametrize(
    "stored",
    [
        "not pem at all, just my-secret-text",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    ],
)
def test_malformed_pem_bundle_fails_without_leaking(stored: str) -> None:
    spec = obj()
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(stored, PEM_CT)])
    assert_names_object(info.value, spec)
    assert "my-secret-text" not in str(info.value)
    assert "bm90I" not in str(info.value)


def test_pem_bundle_with_two_private_keys_is_rejected(rsa_chain: Chain, ec_chain: Chain) -> None:
    stored = key_pem(rsa_chain.key, serialization.PrivateFormat.PKCS8)
    stored += key_pem(ec_chain.key, serialization.PrivateFormat.PKCS8)
    stored += cert_pem(rsa_chain.leaf)
    with pytest.raises(InvalidArgument, match="2 private keys"):
        render(obj(), [secret(stored, PEM_CT)])


# --------------------------------------------------------------------------------------------
# Certificate-backed secrets: PKCS#12


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_pfx_with_shuffled_chain_renders_as_ordered_pem(chain: Chain) -> None:
    pfx = pfx_from(chain.key, chain.leaf, [chain.root, chain.intermediate])
    assert_key_and_chain(render_data(obj(), secret(b64(pfx), PFX_CT)), chain)


def test_pfx_whose_key_is_not_bagged_with_the_leaf_still_starts_with_the_leaf(
    chain: Chain,
) -> None:
    # No certificate is tied to the key (no localKeyId) and the leaf is stored between the
    # root and the intermediate.
    pfx = pkcs12.serialize_key_and_certificates(
        None,
        chain.key,  # type: ignore[arg-type]
        None,
        [chain.root, chain.leaf, chain.intermediate],
        serialization.NoEncryption(),
    )
    assert_key_and_chain(render_data(obj(), secret(b64(pfx), PFX_CT)), chain)


def test_pfx_without_chain_renders_key_and_leaf(ec_chain: Chain) -> None:
    pfx = pfx_from(ec_chain.key, ec_chain.leaf, [])
    keys, certs = split_rendered(render_data(obj(), secret(b64(pfx), PFX_CT)))
    assert [spki(k.public_key()) for k in keys] == [spki(ec_chain.key.public_key())]
    assert fingerprints(certs) == fingerprints([ec_chain.leaf])


@pytest.mark.parametrize("style", ["modern", "legacy"])
@pytest.mark.parametrize("with_chain", [True, False])
def test_encrypted_empty_password_pfx_is_read(
    tmp_path: Path, chain: Chain, style: str, with_chain: bool
) -> None:
    cas = [chain.root, chain.intermediate] if with_chain else []
    pfx = openssl_pfx(tmp_path, chain, cas, style)
    data = render_data(obj(), secret(b64(pfx), PFX_CT))
    if with_chain:
        assert_key_and_chain(data, chain)
    else:
        keys, certs = split_rendered(data)
        assert spki(keys[0].public_key()) == spki(chain.key.public_key())
        assert fingerprints(certs) == fingerprints([chain.leaf])


def test_pfx_without_padding_or_with_line_breaks_is_read(rsa_chain: Chain) -> None:
    pfx = pfx_from(rsa_chain.key, rsa_chain.leaf, [rsa_chain.intermediate, rsa_chain.root])
    text = b64(pfx).rstrip("=")
    wrapped = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    assert_key_and_chain(render_data(obj(), secret(wrapped, PFX_CT)), rsa_chain)


@pytest.mark.parametrize("algorithm", ["modern", "legacy"])
def test_password_protected_pfx_is_rejected(rsa_chain: Chain, algorithm: str) -> None:
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if algorithm == "legacy":
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(
            hashes.SHA1()
        )
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(
            hashes.SHA256()
        )
    pfx = pfx_from(rsa_chain.key, rsa_chain.leaf, [], builder.build(b"pw"))
    spec = obj()
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(b64(pfx), PFX_CT)])
    assert_names_object(info.value, spec)
    assert "password" in str(info.value)


@pytest.mark.parametrize("stored", ["definitely-not-base64!!", b64(b"not a pfx file at all")])
def test_malformed_pfx_fails_without_leaking(stored: str) -> None:
    spec = obj()
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(stored, PFX_CT)])
    assert_names_object(info.value, spec)
    assert PFX_CT in str(info.value)
    assert stored not in str(info.value)
    assert "definitely" not in str(info.value)


# --------------------------------------------------------------------------------------------
# objectFormat pfx


def test_pfx_format_of_pkcs12_secret_is_the_stored_pfx(rsa_chain: Chain) -> None:
    pfx = pfx_from(rsa_chain.key, rsa_chain.leaf, [rsa_chain.intermediate])
    value = secret(b64(pfx), PFX_CT)
    binary = render_data(obj(format="pfx", encoding="base64"), value)
    assert binary == pfx
    text = render_data(obj(format="pfx"), value)
    assert base64.b64decode(text, validate=True) == pfx


def test_pfx_format_of_encrypted_pkcs12_secret_keeps_its_encryption(
    tmp_path: Path, ec_chain: Chain
) -> None:
    pfx = openssl_pfx(tmp_path, ec_chain, [ec_chain.intermediate], "modern")
    assert render_data(obj(format="PFX", encoding="base64"), secret(b64(pfx), PFX_CT)) == pfx


def load_pfx(data: bytes) -> pkcs12.PKCS12KeyAndCertificates:
    return pkcs12.load_pkcs12(data, None)


def test_pfx_format_of_pem_secret_builds_a_password_less_pfx(chain: Chain) -> None:
    stored = cert_pem(chain.root) + cert_pem(chain.intermediate) + cert_pem(chain.leaf)
    stored += key_pem(chain.key, serialization.PrivateFormat.TraditionalOpenSSL)
    value = secret(stored, PEM_CT)
    binary = render_data(obj(format="pfx", encoding="base64"), value)
    text = render_data(obj(format="pfx"), value)
    for data in (binary, base64.b64decode(text, validate=True)):
        loaded = load_pfx(data)
        assert loaded.key is not None and loaded.cert is not None
        assert spki(loaded.key.public_key()) == spki(chain.key.public_key())
        assert fingerprints([loaded.cert.certificate]) == fingerprints([chain.leaf])
        others = [c.certificate for c in loaded.additional_certs]
        assert fingerprints(others) == fingerprints([chain.intermediate, chain.root])


def test_pfx_built_from_pem_is_readable_by_openssl(tmp_path: Path, rsa_chain: Chain) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available")
    stored = cert_pem(rsa_chain.leaf) + key_pem(rsa_chain.key, serialization.PrivateFormat.PKCS8)
    pfx = render_data(obj(format="pfx", encoding="base64"), secret(stored, PEM_CT))
    out = subprocess.run(
        [openssl, "pkcs12", "-nodes", "-passin", "pass:"],
        input=pfx,
        check=True,
        capture_output=True,
    ).stdout
    cert = x509.load_pem_x509_certificate(out)
    assert fingerprints([cert]) == fingerprints([rsa_chain.leaf])


def test_pfx_format_with_hex_encoding_is_base64_text(rsa_chain: Chain) -> None:
    pfx = pfx_from(rsa_chain.key, rsa_chain.leaf, [])
    text = render_data(obj(format="pfx", encoding="hex"), secret(b64(pfx), PFX_CT))
    assert base64.b64decode(text, validate=True) == pfx


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


@pytest.mark.parametrize("kty", ["RSA", "RSA-HSM"])
def test_rsa_key_renders_as_spki_pem(rsa_key: rsa.RSAPrivateKey, kty: str) -> None:
    public = load_spki(render_data(obj(ObjectType.KEY, "signing"), rsa_jwk(rsa_key, kty)))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == rsa_key.public_key().public_numbers()


@pytest.mark.parametrize("kty", ["EC", "EC-HSM"])
def test_ec_key_renders_as_spki_pem(
    ec_key: tuple[str, ec.EllipticCurvePrivateKey], kty: str
) -> None:
    crv, key = ec_key
    public = load_spki(render_data(obj(ObjectType.KEY, "signing"), ec_jwk(crv, key, kty)))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (KeyValue(version=VERSION, kty="oct"), "oct"),
        (KeyValue(version=VERSION, kty="oct-HSM"), "oct-HSM"),
        (KeyValue(version=VERSION, kty="OKP", crv="Ed25519", x=b"\x01" * 32), "OKP"),
        (KeyValue(version=VERSION, kty="EC", crv="P-256K", x=b"\x01", y=b"\x02"), "P-256K"),
    ],
)
def test_unsupported_key_types_fail_with_failed_precondition(value: KeyValue, named: str) -> None:
    spec = obj(ObjectType.KEY, "wrapping")
    with pytest.raises(FailedPrecondition) as info:
        render(spec, [value])
    assert_names_object(info.value, spec)
    assert named in str(info.value)
    assert info.value.code == "FAILED_PRECONDITION"


@pytest.mark.parametrize("missing", ["n", "e"])
def test_rsa_jwk_missing_fields_is_invalid(rsa_key: rsa.RSAPrivateKey, missing: str) -> None:
    spec = obj(ObjectType.KEY, "signing")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [replace(rsa_jwk(rsa_key), **{missing: b""})])
    assert_names_object(info.value, spec)
    assert f"missing {missing}" in str(info.value)


@pytest.mark.parametrize("missing", ["crv", "x", "y"])
def test_ec_jwk_missing_fields_is_invalid(missing: str) -> None:
    value = ec_jwk("P-256", ec.generate_private_key(ec.SECP256R1()))
    spec = obj(ObjectType.KEY, "signing")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [replace(value, **{missing: b"" if missing != "crv" else ""})])
    assert_names_object(info.value, spec)
    assert missing in str(info.value)


def test_ec_point_not_on_curve_is_invalid() -> None:
    value = ec_jwk("P-256", ec.generate_private_key(ec.SECP256R1()))
    spec = obj(ObjectType.KEY, "signing")
    with pytest.raises(InvalidArgument, match="not a point on P-256"):
        render(spec, [replace(value, y=int_bytes(int.from_bytes(value.y, "big") ^ 1, 32))])


def test_invalid_rsa_numbers_are_invalid() -> None:
    spec = obj(ObjectType.KEY, "signing")
    with pytest.raises(InvalidArgument, match="not a valid RSA public key"):
        render(spec, [KeyValue(version=VERSION, kty="RSA", n=b"\x10", e=b"\x01\x00\x01")])


# --------------------------------------------------------------------------------------------
# Certificates


def test_cert_renders_as_pem(rsa_chain: Chain) -> None:
    der = rsa_chain.leaf.public_bytes(serialization.Encoding.DER)
    data = render_data(obj(ObjectType.CERT, "web"), CertValue(version=VERSION, cer=der))
    assert [label for label, _ in pem_blocks(data)] == ["CERTIFICATE"]
    assert fingerprints([x509.load_pem_x509_certificate(data)]) == fingerprints([rsa_chain.leaf])


@pytest.mark.parametrize("cer", [b"", b"\x30\x03garbage-cert-bytes"])
def test_malformed_cert_is_invalid(cer: bytes) -> None:
    spec = obj(ObjectType.CERT, "web")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [CertValue(version=VERSION, cer=cer)])
    assert_names_object(info.value, spec)
    assert "garbage" not in str(info.value)


# --------------------------------------------------------------------------------------------
# Paths, modes, history, and programming errors


def test_alias_and_mode_are_used() -> None:
    spec = obj(name="db-password", alias="conf/db/password", mode=0o600)
    [file] = render(spec, [secret("x")])
    assert (file.path, file.mode, file.data) == ("conf/db/password", 0o600, b"x")


def test_default_path_is_the_name_and_default_mode_is_0644() -> None:
    [file] = render(obj(name="plain"), [secret("x")])
    assert (file.path, file.mode) == ("plain", 0o644)


def test_version_history_writes_numbered_files_newest_first() -> None:
    spec = obj(name="rotating", alias="app/token", version_history=3, mode=0o440)
    versions = [secret(f"value-{i}", version=f"v{i}") for i in range(3)]
    files = render(spec, versions)
    assert [(f.path, f.mode, f.data) for f in files] == [
        ("app/token/0", 0o440, b"value-0"),
        ("app/token/1", 0o440, b"value-1"),
        ("app/token/2", 0o440, b"value-2"),
    ]


def test_version_history_with_fewer_versions_than_asked(rsa_key: rsa.RSAPrivateKey) -> None:
    spec = obj(ObjectType.KEY, "signing", version_history=5)
    files = render(spec, [rsa_jwk(rsa_key)])
    assert [f.path for f in files] == ["signing/0"]
    assert isinstance(load_spki(files[0].data), rsa.RSAPublicKey)


def test_version_history_error_names_the_failing_version() -> None:
    spec = obj(name="blob", encoding="base64", version_history=2)
    versions = [secret("AAAA", version="good"), secret("!!!!", version="broken")]
    with pytest.raises(InvalidArgument) as info:
        render(spec, versions)
    assert_names_object(info.value, spec, "broken")


def test_more_versions_than_history_is_a_programming_error() -> None:
    spec = obj(name="rotating", version_history=2)
    with pytest.raises(Internal):
        render(spec, [secret("a", version="1"), secret("b", version="2"), secret("c")])


@pytest.mark.parametrize("count", [0, 2])
def test_single_version_objects_need_exactly_one_version(count: int) -> None:
    with pytest.raises(Internal):
        render(obj(), [secret("a")] * count)
    with pytest.raises(Internal):
        render(obj(version_history=1), [])


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        (ObjectType.SECRET, KeyValue(version=VERSION, kty="RSA")),
        (ObjectType.KEY, CertValue(version=VERSION, cer=b"")),
        (ObjectType.CERT, SecretValue(version=VERSION, value="v")),
    ],
)
def test_value_of_the_wrong_type_is_internal(type_: ObjectType, value: object) -> None:
    with pytest.raises(Internal) as info:
        render(obj(type_, "mixed"), [value])  # type: ignore[list-item]
    assert "mixed" in str(info.value)
    assert info.value.code == "INTERNAL"


@pytest.mark.parametrize(
    ("option", "text"), [(ObjectFormat, "der"), (ObjectEncoding, "latin-1"), (ObjectFormat, "PFX")]
)
def test_options_outside_the_enums_cannot_reach_render(option: type[StrEnum], text: str) -> None:
    # Render has no option to re-check: an unknown one cannot even be built (the parser rejects
    # it, and options on keys and certificates, with a message naming the key; see test_spec).
    with pytest.raises(ValueError):
        option(text)


def test_ed25519_backed_pem_secret_renders() -> None:
    # Not a Key Vault key type, but nothing about PEM output depends on the algorithm.
    key = ed25519.Ed25519PrivateKey.generate()
    name = _name("ed")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None)
    )
    stored = cert_pem(cert) + key_pem(key, serialization.PrivateFormat.PKCS8)
    keys, certs = split_rendered(render_data(obj(), secret(stored, PEM_CT)))
    assert spki(keys[0].public_key()) == spki(key.public_key())
    assert fingerprints(certs) == fingerprints([cert])
