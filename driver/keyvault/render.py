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

Each type's rules live in its module under ``driver.keyvault.types``. The options were checked
by the spec parser and are enums, so rendering never re-checks them.

Files are ``obj.path``, or ``obj.path/<i>`` (0 = newest) when ``obj.version_history`` is set,
all with ``obj.mode``. Malformed content fails with INVALID_ARGUMENT naming the object, its
type and version; messages never include the content.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.exceptions import UnsupportedAlgorithm

from azcommon.errors import Internal, InvalidArgument, KvError
from driver.keyvault.objects import Fetched, RenderedFile
from driver.keyvault.types.base import where
from driver.keyvault.types.certparts import split
from driver.keyvault.types.registry import kind_of
from driver.keyvault.types.secret import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE, decode_base64
from driver.model import ObjectSpec

__all__ = ["PEM_CONTENT_TYPE", "PKCS12_CONTENT_TYPE", "decode_base64", "render", "render_one"]


def render(obj: ObjectSpec, versions: Sequence[Fetched]) -> list[RenderedFile]:
    """The files for `obj`, from its fetched versions (newest first).

    One version normally; with `obj.version_history` = N, at most N versions, rendered to
    `<path>/0` (newest) ... `<path>/<N-1>`. With `obj.cert_parts`, the parts of a
    certificate-backed secret (`driver.keyvault.types.certparts`).
    """
    if obj.cert_parts:
        if len(versions) != 1:
            raise Internal(f"{obj.type.value} {obj.name!r}: certParts renders one version")
        return split(obj, versions[0])
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
    """The file content for one version of `obj`.

    A tenant's object that a parser chokes on (a certificate with a malformed subject, say)
    fails this object's volume with INVALID_ARGUMENT, never the caller: rotation and restore go
    on with every other volume. The library's message is not shown (it may quote the content).
    """
    try:
        return kind_of(obj.type).render(obj, value)
    except KvError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidArgument(
            f"{where(obj, value.version)}: the content is malformed and cannot be written "
            f"({type(exc).__name__})"
        ) from None
