"""Keys: the public key as PEM SubjectPublicKeyInfo (RSA/RSA-HSM; EC/EC-HSM on P-256, P-384 or
P-521). Other key types and curves fail with FAILED_PRECONDITION."""

from __future__ import annotations

import base64

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.keyvault.keys import KeyClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from azcommon.errors import FailedPrecondition, InvalidArgument
from driver.keyvault.objects import Fetched, KeyValue
from driver.keyvault.types.base import (
    Listed,
    ObjectKind,
    VaultObjects,
    VersionInfo,
    client_options,
    mismatch,
    where,
)
from driver.model import FileContent, ObjectSpec, ObjectType

_RSA_TYPES = frozenset({"RSA", "RSA-HSM"})
_EC_TYPES = frozenset({"EC", "EC-HSM"})
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


class _Keys:
    def __init__(self, client: KeyClient) -> None:
        self._client = client

    def get(self, name: str, version: str) -> Fetched:
        key = self._client.get_key(name, version or None)
        jwk = key.key  # JsonWebKey sets its fields from keyword arguments: read them by name
        kty, crv = getattr(jwk, "kty", None), getattr(jwk, "crv", None)
        return KeyValue(
            version=key.properties.version or "",
            # The SDK gives enums for known values and plain strings for others.
            kty=str(getattr(kty, "value", kty) or ""),
            n=_bytes(jwk, "n"),
            e=_bytes(jwk, "e"),
            crv=str(getattr(crv, "value", crv) or ""),
            x=_bytes(jwk, "x"),
            y=_bytes(jwk, "y"),
        )

    def versions(self, name: str) -> list[VersionInfo]:
        return [
            VersionInfo(p.version or "", p.enabled, p.created_on)
            for p in self._client.list_properties_of_key_versions(name)
        ]

    def names(self) -> list[Listed]:
        return [
            Listed(p.name or "", p.enabled, dict(p.tags or {}), bool(getattr(p, "managed", False)))
            for p in self._client.list_properties_of_keys()
            if p.name
        ]


def _bytes(jwk: object, field: str) -> bytes:
    return bytes(getattr(jwk, field, None) or b"")


class Key(ObjectKind):
    """`key` objects."""

    type = ObjectType.KEY
    get_operation = "key.get"
    list_operation = "key.versions"
    names_operation = "key.list"

    def open(
        self,
        vault_url: str,
        credential: TokenCredential,
        transport: HttpTransport,  # type: ignore[type-arg]
    ) -> VaultObjects:
        return _Keys(KeyClient(vault_url, credential, **client_options(transport)))

    def render(self, obj: ObjectSpec, value: Fetched) -> bytes:
        if not isinstance(value, KeyValue):
            raise mismatch(obj, value)
        public = _public_key(where(obj, value.version), value)
        if obj.content is FileContent.UPSTREAM and isinstance(public, rsa.RSAPublicKey):
            # The azure/kv driver wrote the JSON Web Key's `n` as Key Vault sends it: the
            # modulus in unpadded base64url. (EC keys crashed it: they get PEM, below.)
            return base64.urlsafe_b64encode(value.n).rstrip(b"=")
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _public_key(at: str, value: KeyValue) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    kty = value.kty.upper()
    if kty in _RSA_TYPES:
        _require(at, value, "n", "e")
        try:
            return rsa.RSAPublicNumbers(
                e=int.from_bytes(value.e, "big"), n=int.from_bytes(value.n, "big")
            ).public_key()
        except ValueError:
            raise InvalidArgument(
                f"{at}: the JSON Web Key's n and e are not a valid RSA public key"
            ) from None
    if kty in _EC_TYPES:
        _require(at, value, "crv", "x", "y")
        curve = _CURVES.get(value.crv.upper())
        if curve is None:
            raise FailedPrecondition(
                f"{at}: curve {value.crv!r} is not supported; a public key can be written "
                f"for {', '.join(_CURVES)} only"
            )
        try:
            return ec.EllipticCurvePublicNumbers(
                x=int.from_bytes(value.x, "big"), y=int.from_bytes(value.y, "big"), curve=curve
            ).public_key()
        except ValueError:
            raise InvalidArgument(
                f"{at}: the JSON Web Key's x and y are not a point on {value.crv}"
            ) from None
    raise FailedPrecondition(
        f"{at}: key type {value.kty!r} is not supported; a public key can be written "
        f"for RSA, RSA-HSM, EC and EC-HSM keys only"
    )


def _require(at: str, value: KeyValue, *fields: str) -> None:
    missing = [name for name in fields if not getattr(value, name)]
    if missing:
        raise InvalidArgument(f"{at}: the {value.kty} JSON Web Key is missing {', '.join(missing)}")


KEY = Key()
