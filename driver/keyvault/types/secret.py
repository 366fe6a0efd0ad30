"""Secrets: the value decoded per `objectEncoding`; a secret that backs a certificate as PEM (key
then chain, leaf to root) or, with `objectFormat: pfx`, as PFX. See `driver.keyvault.render` for
the full rules."""

from __future__ import annotations

import base64
import binascii
import string

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.keyvault.secrets import SecretClient

from azcommon.errors import InvalidArgument
from driver.keyvault.certbundle import BundleError, CertBundle
from driver.keyvault.objects import Fetched, SecretValue
from driver.keyvault.types.base import (
    Listed,
    ObjectKind,
    VaultObjects,
    VersionInfo,
    client_options,
    mismatch,
    where,
)
from driver.model import FileContent, ObjectEncoding, ObjectFormat, ObjectSpec, ObjectType

PEM_CONTENT_TYPE = "application/x-pem-file"
PKCS12_CONTENT_TYPE = "application/x-pkcs12"

_WHITESPACE = str.maketrans("", "", string.whitespace)


class _Secrets:
    def __init__(self, client: SecretClient) -> None:
        self._client = client

    def get(self, name: str, version: str) -> Fetched:
        secret = self._client.get_secret(name, version or None)
        props = secret.properties
        return SecretValue(props.version or "", secret.value or "", props.content_type or "")

    def versions(self, name: str) -> list[VersionInfo]:
        return [
            VersionInfo(p.version or "", p.enabled, p.created_on)
            for p in self._client.list_properties_of_secret_versions(name)
        ]

    def names(self) -> list[Listed]:
        return [
            Listed(p.name or "", p.enabled, dict(p.tags or {}), bool(getattr(p, "managed", False)))
            for p in self._client.list_properties_of_secrets()
            if p.name
        ]


class Secret(ObjectKind):
    """`secret` objects: the only type objectFormat and objectEncoding apply to."""

    type = ObjectType.SECRET
    get_operation = "secret.get"
    list_operation = "secret.versions"
    names_operation = "secret.list"
    takes_options = True

    def open(
        self,
        vault_url: str,
        credential: TokenCredential,
        transport: HttpTransport,  # type: ignore[type-arg]
    ) -> VaultObjects:
        return _Secrets(SecretClient(vault_url, credential, **client_options(transport)))

    def render(self, obj: ObjectSpec, value: Fetched) -> bytes:
        if not isinstance(value, SecretValue):
            raise mismatch(obj, value)
        content_type = _content_type(value)
        if content_type not in (PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE):
            return _decode(obj, value)
        if obj.content is FileContent.UPSTREAM and obj.format is ObjectFormat.DEFAULT:
            # As the azure/kv driver wrote it: exactly as stored (a PKCS#12-backed certificate's
            # secret is its base64 PFX, which documented init containers decode themselves).
            return value.value.encode("utf-8")
        try:
            if content_type == PKCS12_CONTENT_TYPE:
                pfx = decode_base64(value.value)
                bundle = CertBundle.from_pkcs12(pfx)
            else:
                bundle = CertBundle.from_pem(value.value)
                pfx = b""
            if obj.format is not ObjectFormat.PFX:
                return bundle.to_pem()
            if not pfx:
                pfx = bundle.to_pkcs12()
        except (BundleError, binascii.Error) as exc:
            raise InvalidArgument(
                f"{where(obj, value.version)}: the certificate-backed secret ({content_type}) "
                f"{_problem(exc)}"
            ) from None
        # As upstream: binary with objectEncoding base64, base64 text otherwise.
        if obj.encoding is ObjectEncoding.BASE64:
            return pfx
        return base64.b64encode(pfx)


def _content_type(value: SecretValue) -> str:
    # Media types are case-insensitive and may carry parameters ("; charset=...").
    return value.content_type.split(";", 1)[0].strip().lower()


def _problem(exc: Exception) -> str:
    if isinstance(exc, BundleError):
        return f"is unusable: {exc}"
    return f"is not valid base64 ({exc})"


def _decode(obj: ObjectSpec, value: SecretValue) -> bytes:
    encoding = obj.encoding
    try:
        if encoding is ObjectEncoding.BASE64:
            return decode_base64(value.value)
        if encoding is ObjectEncoding.HEX:
            return bytes.fromhex(value.value.translate(_WHITESPACE))
        return value.value.encode("utf-8")
    except (binascii.Error, ValueError) as exc:
        # binascii and fromhex messages name the problem or a position, never the content.
        detail = (
            "contains text that cannot be encoded as UTF-8"
            if isinstance(exc, UnicodeError)
            else f"is not valid {encoding} ({exc})"
        )
        raise InvalidArgument(
            f"{where(obj, value.version)}: the value {detail} (objectEncoding {encoding})"
        ) from None


def decode_base64(text: str) -> bytes:
    """Standard base64, ignoring whitespace and tolerating missing padding."""
    compact = text.translate(_WHITESPACE)
    if len(compact) % 4 == 1:
        raise binascii.Error("it is truncated: its length is not a whole number of bytes")
    padded = compact + "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise binascii.Error(
            "it has characters outside the standard alphabet A-Z a-z 0-9 + / "
            "or misplaced '=' padding"
        ) from None


SECRET = Secret()
