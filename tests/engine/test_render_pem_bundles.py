"""Certificate-backed secrets stored as PEM are written key first, then the chain leaf to root,
checked by parsing the output with `cryptography`."""

from __future__ import annotations

import itertools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from azcommon.errors import InvalidArgument
from driver.keyvault.render import render
from tests.engine.render_support import (
    PEM_CT,
    Chain,
    assert_key_and_chain,
    assert_names_object,
    cert_pem,
    fingerprints,
    key_pem,
    make_cert,
    obj,
    render_data,
    secret,
    split_rendered,
)

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
