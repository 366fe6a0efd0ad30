"""Split certificates: a certificate-backed secret written as separate files, chosen per object.

`certParts` names which files a secret's object writes, each with its own mode:

- `<path>.key`: the private key, unencrypted PKCS#8 PEM;
- `<path>.crt`: the leaf certificate (the one whose public key matches the key), PEM;
- `<path>.chain`: the issuers of the leaf, intermediates first and the root last, PEM (empty
  for a self-signed leaf; certificates unrelated to the leaf's chain are left out);
- `<path>.bundle`: key, leaf and chain, and then any unrelated certificates: what the object
  writes unsplit.

The secret must back a certificate (`application/x-pem-file` or `application/x-pkcs12`);
anything else fails with INVALID_ARGUMENT naming the object, never quoting the content.
"""

from __future__ import annotations

import binascii

from cryptography.hazmat.primitives import serialization

from azcommon.errors import InvalidArgument
from driver.keyvault.certbundle import BundleError, CertBundle
from driver.keyvault.objects import Fetched, RenderedFile, SecretValue
from driver.keyvault.types.base import mismatch, where
from driver.keyvault.types.secret import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE, decode_base64
from driver.model import CertPartName, ObjectSpec


def split(obj: ObjectSpec, value: Fetched) -> list[RenderedFile]:
    """The files of `obj.cert_parts` for one fetched version of a certificate-backed secret."""
    if not isinstance(value, SecretValue):
        raise mismatch(obj, value)
    bundle = _bundle(obj, value)
    return [
        RenderedFile(
            f"{obj.path}.{part.part.value}", part.mode, _content(obj, value, bundle, part.part)
        )
        for part in obj.cert_parts
    ]


def _bundle(obj: ObjectSpec, value: SecretValue) -> CertBundle:
    content_type = value.content_type.split(";", 1)[0].strip().lower()
    at = where(obj, value.version)
    try:
        if content_type == PKCS12_CONTENT_TYPE:
            return CertBundle.from_pkcs12(decode_base64(value.value))
        if content_type == PEM_CONTENT_TYPE:
            return CertBundle.from_pem(value.value)
    except BundleError as exc:
        raise InvalidArgument(f"{at}: the certificate-backed secret is unusable: {exc}") from None
    except binascii.Error as exc:
        raise InvalidArgument(f"{at}: the PKCS#12 secret is not valid base64 ({exc})") from None
    raise InvalidArgument(
        f"{at}: certParts needs a secret that backs a certificate (content type "
        f"{PEM_CONTENT_TYPE} or {PKCS12_CONTENT_TYPE})"
    )


def _content(obj: ObjectSpec, value: SecretValue, bundle: CertBundle, part: CertPartName) -> bytes:
    if part is CertPartName.BUNDLE:
        return bundle.to_pem()
    if part is CertPartName.KEY:
        if bundle.key is None:
            raise InvalidArgument(
                f"{where(obj, value.version)}: certParts asks for the key, but the secret holds "
                "no private key"
            )
        return bundle.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    certs = bundle.certs[:1] if part is CertPartName.CRT else bundle.certs[1 : bundle.chain_length]
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
