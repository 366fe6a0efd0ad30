"""Certificate-backed secrets stored as PKCS#12 render as ordered PEM, and objectFormat pfx
writes a PFX that openssl and `cryptography` can read."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from azcommon.errors import InvalidArgument
from driver.keyvault.render import render
from tests.engine.render_support import (
    PEM_CT,
    PFX_CT,
    Chain,
    assert_key_and_chain,
    assert_names_object,
    b64,
    cert_pem,
    fingerprints,
    key_pem,
    obj,
    openssl_pfx,
    pfx_from,
    render_data,
    secret,
    spki,
    split_rendered,
)


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
