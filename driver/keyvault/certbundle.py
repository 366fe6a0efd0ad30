"""A private key with its certificates, as a secret that backs a Key Vault certificate holds them.

Key Vault keeps such a secret either as PEM text (`application/x-pem-file`) or as a base64
PKCS#12 file (`application/x-pkcs12`), with the certificates in whatever order they were
uploaded. Servers such as nginx read the first certificate of a PEM file as their own and fail
with "key values mismatch" when it is not, so `CertBundle` orders the certificates by following
issuer -> subject (and checking signatures) from the certificate that matches the private key,
never by the stored order.

Errors are `BundleError` with a message that says what is wrong and never quotes the content;
the caller adds which object it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

# Labels (RFC 7468) we read; any other block (e.g. "EC PARAMETERS") is skipped.
_CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)


class BundleError(ValueError):
    """The content is not a usable key + certificate bundle (message never quotes the content)."""


@dataclass(frozen=True)
class CertBundle:
    """A private key (optional) and certificates ordered leaf -> ... -> root, then the rest.

    `chain_length` says how many of `certs` form the chain; certificates after it are unrelated
    to the leaf's chain and are kept, in their stored order, so that nothing is dropped.
    """

    key: PrivateKeyTypes | None
    certs: tuple[x509.Certificate, ...]
    chain_length: int

    @classmethod
    def from_pem(cls, text: str) -> CertBundle:
        keys: list[PrivateKeyTypes] = []
        certs: list[x509.Certificate] = []
        blocks = 0
        for match in _PEM_BLOCK.finditer(text):
            blocks += 1
            label = match.group(1)
            block = match.group(0).encode("ascii", errors="replace")
            if label in _CERT_LABELS:
                try:
                    certs.append(x509.load_pem_x509_certificate(block))
                except ValueError:
                    raise BundleError(
                        f"PEM block #{blocks} ({label}) is not a valid X.509 certificate"
                    ) from None
            elif label.endswith("PRIVATE KEY"):
                keys.append(_load_pem_key(block, label, blocks))
        if blocks == 0:
            raise BundleError("no PEM blocks found (expected a private key and certificates)")
        if len(keys) > 1:
            raise BundleError(f"found {len(keys)} private keys; a certificate has exactly one")
        return cls.assemble(keys[0] if keys else None, certs)

    @classmethod
    def from_pkcs12(cls, data: bytes) -> CertBundle:
        try:
            # Key Vault stores PFX files without a password; OpenSSL tries both the absent and
            # the empty password, and reads modern (AES/SHA-256) and legacy (3DES/SHA-1) files.
            loaded = pkcs12.load_pkcs12(data, None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise BundleError(
                "not a readable PKCS#12 (PFX) file (corrupt, or protected by a password)"
            ) from None
        certs = [loaded.cert.certificate] if loaded.cert is not None else []
        certs.extend(c.certificate for c in loaded.additional_certs)
        return cls.assemble(loaded.key, certs)

    @classmethod
    def assemble(
        cls, key: PrivateKeyTypes | None, stored: Sequence[x509.Certificate]
    ) -> CertBundle:
        """Order `stored` leaf to root; the leaf is the certificate of `key` when there is one."""
        pool = _unique(stored)
        if not pool:
            raise BundleError("contains no certificate")
        if key is not None:
            wanted = _spki(key.public_key())
            leaf = next((c for c in pool if wanted and _cert_spki(c) == wanted), None)
            if leaf is None:
                raise BundleError("the private key does not match any certificate's public key")
        else:
            leaf = _leaf_without_key(pool)
        chain = [leaf]
        rest = [c for c in pool if c is not leaf]
        current = leaf
        while not _self_issued(current):
            issuer = _find_issuer(current, rest)
            if issuer is None:
                break
            chain.append(issuer)
            rest.remove(issuer)
            current = issuer
        return cls(key=key, certs=(*chain, *rest), chain_length=len(chain))

    def to_pem(self) -> bytes:
        """The key as unencrypted PKCS#8, then the certificates in order."""
        parts: list[bytes] = []
        if self.key is not None:
            parts.append(
                self.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        parts.extend(c.public_bytes(serialization.Encoding.PEM) for c in self.certs)
        return b"".join(parts)

    def to_pkcs12(self) -> bytes:
        """A password-less PFX (MAC under the empty password, bags unencrypted), as Key Vault
        itself hands out, holding the key, the leaf and the other certificates in order."""
        key = self.key
        if key is not None and not isinstance(
            key,
            rsa.RSAPrivateKey
            | ec.EllipticCurvePrivateKey
            | dsa.DSAPrivateKey
            | ed25519.Ed25519PrivateKey
            | ed448.Ed448PrivateKey,
        ):
            raise BundleError("the private key type cannot be stored in a PKCS#12 file")
        try:
            return pkcs12.serialize_key_and_certificates(
                None, key, self.certs[0], list(self.certs[1:]) or None,
                serialization.NoEncryption(),
            )  # fmt: skip
        except (ValueError, TypeError):
            raise BundleError(
                "could not build a PKCS#12 file from the key and certificates"
            ) from None


def _load_pem_key(block: bytes, label: str, index: int) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(block, password=None)
    except TypeError:
        # cryptography raises TypeError when the key needs a password.
        raise BundleError(
            f"PEM block #{index} ({label}) is an encrypted private key; store it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise BundleError(f"PEM block #{index} ({label}) is not a valid private key") from None


def _unique(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint not in seen:
            seen.add(fingerprint)
            out.append(cert)
    return out


def _spki(public_key: object) -> bytes:
    if not hasattr(public_key, "public_bytes"):
        return b""
    try:
        data: bytes = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, TypeError):
        return b""
    return data


def _cert_spki(cert: x509.Certificate) -> bytes:
    try:
        return _spki(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return b""


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool | None:
    """True/False when the signature could be checked, None when its algorithm is unsupported."""
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The names match (the caller checked), so these mean an algorithm cryptography cannot
        # verify (signature or issuer key type).
        return None
    return True


def _key_ids_agree(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """False only when both identifiers are present and differ."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except (x509.ExtensionNotFound, ValueError):
        return True
    return aki.key_identifier is None or aki.key_identifier == ski.digest


def _find_issuer(
    cert: x509.Certificate, pool: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The certificate in `pool` that issued `cert`: its subject is `cert`'s issuer and its key
    verifies `cert`'s signature. When the signature algorithm cannot be checked here, a name
    match whose key identifiers agree is accepted instead."""
    unverifiable: list[x509.Certificate] = []
    for candidate in pool:
        if candidate.subject != cert.issuer:
            continue
        verdict = _signed_by(cert, candidate)
        if verdict is True:
            return candidate
        if verdict is None and _key_ids_agree(cert, candidate):
            unverifiable.append(candidate)
    return unverifiable[0] if unverifiable else None


def _leaf_without_key(pool: Sequence[x509.Certificate]) -> x509.Certificate:
    """With no private key, the leaf is the first certificate that issued none of the others."""
    issuers = {id(i) for c in pool if (i := _find_issuer(c, [p for p in pool if p is not c]))}
    for cert in pool:
        if id(cert) not in issuers:
            return cert
    return pool[0]
