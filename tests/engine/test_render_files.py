"""What the rendered files are called and how they look: aliases, modes, version history, and
the programming errors render refuses."""

from __future__ import annotations

import datetime
from enum import StrEnum

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from azcommon.errors import Internal, InvalidArgument
from driver.keyvault.objects import CertValue, KeyValue, SecretValue
from driver.keyvault.render import render
from driver.model import ObjectEncoding, ObjectFormat, ObjectType
from tests.engine.render_support import (
    PEM_CT,
    VERSION,
    _name,
    assert_names_object,
    cert_pem,
    fingerprints,
    key_pem,
    load_spki,
    obj,
    render_data,
    rsa_jwk,
    secret,
    spki,
    split_rendered,
)

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
