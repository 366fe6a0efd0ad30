"""Key Vault keys are written as SubjectPublicKeyInfo PEM; key types we cannot render and
malformed JWKs fail with the right status."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from azcommon.errors import FailedPrecondition, InvalidArgument
from driver.keyvault.objects import KeyValue
from driver.keyvault.render import render
from driver.model import ObjectType
from tests.engine.render_support import (
    VERSION,
    assert_names_object,
    ec_jwk,
    int_bytes,
    load_spki,
    obj,
    render_data,
    rsa_jwk,
)


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
