"""Key and certificate material for the devstack: the TLS CA, JWKs, self-signed and chained
certificates, and the PEM / PKCS#12 forms Key Vault uses for certificate-backed secrets."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_CURVE_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66}

PEM_CONTENT_TYPE = "application/x-pem-file"
PKCS12_CONTENT_TYPE = "application/x-pkcs12"


class CryptoInputError(ValueError):
    """Certificate or key material the caller supplied cannot be used."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(value: int, length: int | None = None) -> bytes:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(size, "big")


def generate_key(kty: str, size: int = 2048, curve: str = "P-256") -> PrivateKey:
    if kty.upper().startswith("RSA"):
        if size not in (2048, 3072, 4096):
            raise CryptoInputError(f"RSA key size {size} is not supported (2048, 3072, 4096)")
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if kty.upper().startswith("EC"):
        if curve not in CURVES:
            raise CryptoInputError(f"curve {curve!r} is not supported ({', '.join(CURVES)})")
        return ec.generate_private_key(CURVES[curve])
    raise CryptoInputError(f"key type {kty!r} is not supported (RSA, EC)")


def curve_name(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    return _CURVE_NAMES[key.curve.name]


def key_description(key: PrivateKey) -> dict[str, Any]:
    """The `key_props` part of a certificate policy for this key."""
    if isinstance(key, rsa.RSAPrivateKey):
        return {"kty": "RSA", "key_size": key.key_size}
    return {"kty": "EC", "crv": curve_name(key)}


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    """The JWK Key Vault returns for a key: public parts only, base64url without padding."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {
            "kid": kid,
            "kty": "RSA",
            "key_ops": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
            "n": b64url(_int_bytes(numbers.n)),
            "e": b64url(_int_bytes(numbers.e)),
        }
    crv = curve_name(key)
    ec_numbers = key.public_key().public_numbers()
    size = _CURVE_BYTES[crv]
    return {
        "kid": kid,
        "kty": "EC",
        "key_ops": ["sign", "verify"],
        "crv": crv,
        "x": b64url(_int_bytes(ec_numbers.x, size)),
        "y": b64url(_int_bytes(ec_numbers.y, size)),
    }


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        crv = curve_name(key)
        if crv == "P-384":
            return hashes.SHA384()
        if crv == "P-521":
            return hashes.SHA512()
    return hashes.SHA256()


def _name(common_name: str) -> x509.Name:
    if common_name.upper().startswith("CN="):
        return x509.Name.from_rfc4514_string(common_name)
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificate(
    subject: str,
    key: PrivateKey,
    *,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: PrivateKey | None = None,
    ca: bool = False,
    path_length: int | None = None,
    validity_days: int = 365,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> x509.Certificate:
    """A certificate for `key`, self-signed unless an issuer is given."""
    now = dt.datetime.now(dt.UTC)
    signer = issuer_key if issuer_key is not None else key
    issuer_name = issuer_cert.subject if issuer_cert is not None else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, _hash_for(signer))


@dataclass(frozen=True)
class TlsMaterial:
    ca_bundle: Path
    cert_file: Path
    key_file: Path


def write_tls_material(state_dir: Path) -> TlsMaterial:
    """A fresh CA and a leaf for 127.0.0.1/localhost, written into the state dir."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = make_certificate("devstack CA", ca_key, ca=True, path_length=0, validity_days=30)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_certificate(
        "localhost",
        leaf_key,
        issuer_cert=ca_cert,
        issuer_key=ca_key,
        validity_days=30,
        dns_names=("localhost",),
        ip_addresses=("127.0.0.1",),
    )
    material = TlsMaterial(
        ca_bundle=state_dir / "ca.pem",
        cert_file=state_dir / "server.pem",
        key_file=state_dir / "server-key.pem",
    )
    material.ca_bundle.write_bytes(cert_pem(ca_cert))
    material.cert_file.write_bytes(cert_pem(leaf) + cert_pem(ca_cert))
    material.key_file.write_bytes(private_key_pem(leaf_key))
    material.key_file.chmod(0o600)
    return material


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def thumbprint(cert: x509.Certificate) -> str:
    """`x5t`: base64url of the SHA-1 of the DER certificate."""
    return b64url(hashlib.sha1(cert_der(cert)).digest())  # x5t is defined as SHA-1


def backing_secret_value(content_type: str, key: PrivateKey, chain: list[x509.Certificate]) -> str:
    """The value of a certificate's backing secret: PEM key + chain, or base64 PKCS#12."""
    if content_type == PEM_CONTENT_TYPE:
        return (private_key_pem(key) + b"".join(cert_pem(c) for c in chain)).decode("ascii")
    pfx = pkcs12.serialize_key_and_certificates(
        None, key, chain[0], chain[1:] or None, serialization.NoEncryption()
    )
    return base64.b64encode(pfx).decode("ascii")


def _matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _order_chain(key: PrivateKey, certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Leaf (the certificate of `key`) first, then each issuer in turn."""
    leaves = [c for c in certs if _matches(key, c)]
    if not leaves:
        raise CryptoInputError("no certificate in the content matches its private key")
    chain = [leaves[0]]
    rest = [c for c in certs if c is not leaves[0]]
    while rest:
        issuer = next((c for c in rest if c.subject == chain[-1].issuer), None)
        if issuer is None:
            break
        chain.append(issuer)
        rest.remove(issuer)
    return chain + rest


def _as_private_key(key: object) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    raise CryptoInputError("only RSA and EC private keys are supported")


def parse_pem_bundle(text: str) -> tuple[PrivateKey, list[x509.Certificate]]:
    """A PEM with one private key and one or more certificates."""
    data = text.encode("ascii", errors="replace")
    key: PrivateKey | None = None
    for block in data.split(b"-----END ")[:-1]:
        start = block.rfind(b"-----BEGIN ")
        if start < 0 or b"PRIVATE KEY" not in block[start : start + 40]:
            continue
        label_end = block.index(b"-----", start + 11)
        label = block[start + 11 : label_end]
        pem = block[start:] + b"-----END " + label + b"-----\n"
        try:
            key = _as_private_key(serialization.load_pem_private_key(pem, password=None))
        except (ValueError, TypeError) as exc:
            raise CryptoInputError(f"the private key cannot be read ({exc})") from None
        break
    if key is None:
        raise CryptoInputError("the PEM content has no private key")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CryptoInputError("the PEM content has no readable certificate") from None
    return key, _order_chain(key, certs)


def parse_pfx(data: bytes, password: str | None) -> tuple[PrivateKey, list[x509.Certificate]]:
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(
            data, password.encode() if password else None
        )
    except ValueError as exc:
        raise CryptoInputError(f"the PKCS#12 content cannot be read ({exc})") from None
    if key is None or cert is None:
        raise CryptoInputError("the PKCS#12 content has no private key or no certificate")
    return _as_private_key(key), _order_chain(_as_private_key(key), [cert, *extra])


def signing_hash_name(key: PrivateKey) -> str:
    return _hash_for(key).name
