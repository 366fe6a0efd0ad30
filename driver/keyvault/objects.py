"""What the fetcher hands the renderer: one fetched version of one Key Vault object.

These are plain values taken from the SDK models, so rendering is pure and testable without HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SecretValue:
    version: str
    value: str = field(repr=False)
    content_type: str = ""  # "application/x-pem-file" / "application/x-pkcs12" back certificates


@dataclass(frozen=True)
class KeyValue:
    """A JSON Web Key's public parts, as bytes (big-endian integers) the way the SDK gives them."""

    version: str
    kty: str  # "RSA", "RSA-HSM", "EC", "EC-HSM", "oct", ...
    n: bytes = b""
    e: bytes = b""
    crv: str = ""  # "P-256", "P-384", "P-521", ...
    x: bytes = b""
    y: bytes = b""


@dataclass(frozen=True)
class CertValue:
    version: str
    cer: bytes  # the certificate, DER


Fetched = SecretValue | KeyValue | CertValue


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the volume root, "/"-separated
    mode: int
    data: bytes = field(repr=False)
