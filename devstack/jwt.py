"""RS256 JSON Web Tokens, signed and verified with `cryptography` (no JWT library needed)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devstack.crypto import b64url, b64url_decode


class TokenError(ValueError):
    """A token is malformed, badly signed, or its claims do not hold."""


class Signer:
    """Signs and verifies tokens with one RSA key; `kid` names the key in the JWT header."""

    def __init__(self, kid: str, key: rsa.RSAPrivateKey | None = None) -> None:
        self.kid = kid
        self._key = key if key is not None else rsa.generate_private_key(65537, 2048)

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this signer made; raises TokenError otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("the token is not a JWS compact serialization")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError:
            raise TokenError("the token is not valid base64url JSON") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise TokenError("the token is not signed with RS256")
        if header.get("kid") != self.kid:
            raise TokenError("the token was signed by an unknown key")
        try:
            self._key.public_key().verify(
                signature,
                (parts[0] + "." + parts[1]).encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise TokenError("the token signature is invalid") from None
        if not isinstance(claims, dict):
            raise TokenError("the token claims are not a JSON object")
        return claims

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {
            "keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "n": b64url(n), "e": b64url(e)}]
        }


def verify_with_public_key(token: str, public_key: rsa.RSAPublicKey) -> dict[str, Any]:
    """The claims of an RS256 token signed by the holder of `public_key`, whatever its `kid`
    (a Kubernetes API server names its keys by hash); raises TokenError otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("the token is not a JWS compact serialization")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except ValueError:
        raise TokenError("the token is not valid base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        raise TokenError("the token is not signed with RS256")
    try:
        public_key.verify(
            signature, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise TokenError("the token signature is invalid") from None
    if not isinstance(claims, dict):
        raise TokenError("the token claims are not a JSON object")
    return claims
