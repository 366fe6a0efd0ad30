"""Fetched Key Vault objects -> the files that land in the volume. Pure: no I/O.

What each object becomes:

- ``secret``: the value decoded per ``objectEncoding``:

  - ``utf-8`` (default): the text as UTF-8 bytes;
  - ``base64``: standard-alphabet base64. Whitespace and line breaks are ignored and missing
    ``=`` padding is accepted (values pasted from tools often lack both); any other character
    outside the alphabet is an error. URL-safe base64 (``-``/``_``) is not accepted;
  - ``hex``: pairs of hex digits, either case; whitespace is ignored.

- A secret that backs a certificate (content type ``application/x-pem-file`` or
  ``application/x-pkcs12``; the latter holds base64 of a password-less PFX):

  - ``objectFormat`` ``pem`` (default): PEM text, the private key first (unencrypted PKCS#8),
    then the certificate chain ordered leaf -> intermediates -> root by following issuer to
    subject (the leaf is the certificate whose public key matches the private key), then any
    certificates that are not part of that chain. ``objectEncoding`` does not apply: the output
    is always PEM text.
  - ``objectFormat`` ``pfx``: a PFX file. For a PKCS#12-backed secret it is the stored PFX,
    unchanged; for a PEM-backed secret it is built from the key and the ordered chain (no
    password). As upstream does, it is written as binary when ``objectEncoding`` is ``base64``
    and as base64 text otherwise.

  Any other secret is decoded per ``objectEncoding``, whatever its ``objectFormat``.

- ``key``: the public key as PEM SubjectPublicKeyInfo (RSA/RSA-HSM; EC/EC-HSM on P-256, P-384
  or P-521). Other key types and curves fail with FAILED_PRECONDITION.
- ``cert``: the certificate as PEM (the leaf only, as Key Vault returns it).

Files are ``obj.path``, or ``obj.path/<i>`` (0 = newest) when ``obj.version_history`` is set,
all with ``obj.mode``. Malformed content fails with INVALID_ARGUMENT naming the object, its
type and version; messages never include the content.
"""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from driver.errors import FailedPrecondition, Internal, InvalidArgument
from driver.keyvault.certbundle import BundleError, CertBundle
from driver.keyvault.objects import CertValue, Fetched, KeyValue, RenderedFile, SecretValue
from driver.model import ObjectSpec, ObjectType

PEM_CONTENT_TYPE = "application/x-pem-file"
PKCS12_CONTENT_TYPE = "application/x-pkcs12"

ENCODINGS = ("utf-8", "base64", "hex")
FORMATS = ("", "pem", "pfx")

_RSA_TYPES = frozenset({"RSA", "RSA-HSM"})
_EC_TYPES = frozenset({"EC", "EC-HSM"})
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_WHITESPACE = str.maketrans("", "", string.whitespace)


def render(obj: ObjectSpec, versions: Sequence[Fetched]) -> list[RenderedFile]:
    """The files for `obj`, from its fetched versions (newest first).

    One version normally; with `obj.version_history` = N, at most N versions, rendered to
    `<path>/0` (newest) ... `<path>/<N-1>`.
    """
    _check_options(obj)
    if obj.version_history > 0:
        if not versions or len(versions) > obj.version_history:
            raise Internal(
                f"{obj.type.value} {obj.name!r}: got {len(versions)} versions to render, "
                f"expected 1 to {obj.version_history} (objectVersionHistory)"
            )
        base = obj.path.rstrip("/")
        return [
            RenderedFile(path=f"{base}/{i}", mode=obj.mode, data=render_one(obj, version))
            for i, version in enumerate(versions)
        ]
    if len(versions) != 1:
        raise Internal(
            f"{obj.type.value} {obj.name!r}: got {len(versions)} versions to render, expected 1"
        )
    return [RenderedFile(path=obj.path, mode=obj.mode, data=render_one(obj, versions[0]))]


def render_one(obj: ObjectSpec, value: Fetched) -> bytes:
    """The file content for one version of `obj`."""
    match obj.type, value:
        case ObjectType.SECRET, SecretValue():
            return _render_secret(obj, value)
        case ObjectType.KEY, KeyValue():
            return _render_key(obj, value)
        case ObjectType.CERT, CertValue():
            return _render_cert(obj, value)
    raise Internal(
        f"{obj.type.value} {obj.name!r}: fetched a {type(value).__name__}, "
        f"which does not match the object type"
    )


def _check_options(obj: ObjectSpec) -> None:
    # The spec parser validates these already; a bad value here is still the user's input.
    if obj.encoding.lower() not in ENCODINGS:
        raise InvalidArgument(
            f"{obj.type.value} {obj.name!r}: objectEncoding {obj.encoding!r} is not one of "
            f"{', '.join(ENCODINGS)}"
        )
    if obj.format.lower() not in FORMATS:
        raise InvalidArgument(
            f"{obj.type.value} {obj.name!r}: objectFormat {obj.format!r} is not pem or pfx"
        )
    if obj.type is not ObjectType.SECRET:
        if obj.format.lower() == "pfx":
            raise InvalidArgument(
                f"{obj.type.value} {obj.name!r}: objectFormat pfx is only supported for secrets"
            )
        if obj.encoding.lower() != "utf-8":
            raise InvalidArgument(
                f"{obj.type.value} {obj.name!r}: objectEncoding is only supported for secrets"
            )


def _where(obj: ObjectSpec, version: str) -> str:
    vault = f" in vault {obj.vault!r}" if obj.vault else ""
    return f"{obj.type.value} {obj.name!r} version {version or 'latest'!r}{vault}"


def _content_type(value: SecretValue) -> str:
    # Media types are case-insensitive and may carry parameters ("; charset=...").
    return value.content_type.split(";", 1)[0].strip().lower()


def _render_secret(obj: ObjectSpec, value: SecretValue) -> bytes:
    content_type = _content_type(value)
    if content_type not in (PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE):
        return _decode(obj, value, obj.encoding)
    where = _where(obj, value.version)
    try:
        if content_type == PKCS12_CONTENT_TYPE:
            pfx = decode_base64(value.value)
            bundle = CertBundle.from_pkcs12(pfx)
        else:
            bundle = CertBundle.from_pem(value.value)
            pfx = b""
        if obj.format.lower() != "pfx":
            return bundle.to_pem()
        if not pfx:
            pfx = bundle.to_pkcs12()
    except (BundleError, binascii.Error) as exc:
        raise InvalidArgument(
            f"{where}: the certificate-backed secret ({content_type}) {_problem(exc)}"
        ) from None
    if obj.encoding.lower() == "base64":
        return pfx
    return base64.b64encode(pfx)


def _problem(exc: Exception) -> str:
    if isinstance(exc, BundleError):
        return f"is unusable: {exc}"
    return f"is not valid base64 ({exc})"


def _decode(obj: ObjectSpec, value: SecretValue, encoding: str) -> bytes:
    encoding = encoding.lower()
    try:
        if encoding == "base64":
            return decode_base64(value.value)
        if encoding == "hex":
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
            f"{_where(obj, value.version)}: the value {detail} (objectEncoding {encoding})"
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


def _render_key(obj: ObjectSpec, value: KeyValue) -> bytes:
    where = _where(obj, value.version)
    kty = value.kty.upper()
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if kty in _RSA_TYPES:
        _require(where, value, "n", "e")
        try:
            public_key = rsa.RSAPublicNumbers(
                e=int.from_bytes(value.e, "big"), n=int.from_bytes(value.n, "big")
            ).public_key()
        except ValueError:
            raise InvalidArgument(
                f"{where}: the JSON Web Key's n and e are not a valid RSA public key"
            ) from None
    elif kty in _EC_TYPES:
        _require(where, value, "crv", "x", "y")
        curve = _CURVES.get(value.crv.upper())
        if curve is None:
            raise FailedPrecondition(
                f"{where}: curve {value.crv!r} is not supported; a public key can be written "
                f"for {', '.join(_CURVES)} only"
            )
        try:
            public_key = ec.EllipticCurvePublicNumbers(
                x=int.from_bytes(value.x, "big"), y=int.from_bytes(value.y, "big"), curve=curve
            ).public_key()
        except ValueError:
            raise InvalidArgument(
                f"{where}: the JSON Web Key's x and y are not a point on {value.crv}"
            ) from None
    else:
        raise FailedPrecondition(
            f"{where}: key type {value.kty!r} is not supported; a public key can be written "
            f"for RSA, RSA-HSM, EC and EC-HSM keys only"
        )
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _require(where: str, value: KeyValue, *fields: str) -> None:
    missing = [name for name in fields if not getattr(value, name)]
    if missing:
        raise InvalidArgument(
            f"{where}: the {value.kty} JSON Web Key is missing {', '.join(missing)}"
        )


def _render_cert(obj: ObjectSpec, value: CertValue) -> bytes:
    where = _where(obj, value.version)
    if not value.cer:
        raise InvalidArgument(f"{where}: the certificate has no content (empty cer)")
    try:
        cert = x509.load_der_x509_certificate(value.cer)
    except ValueError:
        raise InvalidArgument(f"{where}: the certificate (cer) is not valid DER X.509") from None
    return cert.public_bytes(serialization.Encoding.PEM)
