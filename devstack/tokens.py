"""Issuing and checking the devstack's tokens: Entra ID access tokens (what Key Vault accepts)
and Kubernetes service-account tokens (what workload identity exchanges for access tokens)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.jwt import Signer, TokenError, verify_with_public_key
from devstack.world import SA_AUDIENCE, Federation, Identity, World

KEYVAULT_AUDIENCES = ("https://vault.azure.net", "https://vault.azure.net/")


@dataclass(frozen=True)
class Issued:
    access_token: str
    resource: str
    expires_in: int
    expires_on: int
    not_before: int


class TokenIssuer:
    def __init__(self, world: World, authority_host: str) -> None:
        self.world = world
        self.authority_host = authority_host.rstrip("/")
        self._access = Signer("devstack-entra")
        self._sa = Signer("devstack-sa")
        # Other service-account issuers whose tokens federations accept (a real cluster's API
        # server), as an Entra ID federated credential trusts a cluster's OIDC issuer.
        self._trusted_sa: dict[str, rsa.RSAPublicKey] = {}

    @property
    def issuer(self) -> str:
        return f"{self.authority_host}/{self.world.tenant_id}/"

    @property
    def sa_issuer(self) -> str:
        return f"{self.authority_host}/service-accounts"

    def jwks(self) -> dict[str, Any]:
        return self._access.jwks()

    # --- access tokens ---------------------------------------------------------------------

    def issue(self, identity: Identity, resource: str, lifetime: int | None = None) -> Issued:
        t = int(time.time())
        life = self.world.token_lifetime if lifetime is None else lifetime
        claims = {
            "aud": resource,
            "iss": self.issuer,
            "iat": t,
            "nbf": t - 300,
            "exp": t + life,
            "tid": self.world.tenant_id,
            "appid": identity.client_id,
            "azp": identity.client_id,
            "oid": identity.client_id,
            "sub": identity.client_id,
            "idtyp": "app",
            "ver": "1.0",
            "uti": uuid.uuid4().hex,
        }
        return Issued(self._access.sign(claims), resource, life, t + life, t - 300)

    def verify_signature(self, token: str) -> dict[str, Any]:
        """Claims of a token this devstack's Entra ID signed; the caller checks audience,
        issuer and lifetime as its service does (see `devstack.arm.app`)."""
        return self._access.verify(token)

    def verify_for_keyvault(self, token: str) -> dict[str, Any]:
        """Claims of a valid Key Vault access token; TokenError naming the problem otherwise."""
        claims = self._access.verify(token)
        if claims.get("aud") not in KEYVAULT_AUDIENCES:
            raise TokenError("AKV10022: Invalid audience.")
        if claims.get("iss") != self.issuer or claims.get("tid") != self.world.tenant_id:
            raise TokenError("AKV10032: Invalid issuer.")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= int(time.time()):
            raise TokenError("AKV10000: Token is expired.")
        if not isinstance(claims.get("appid"), str):
            raise TokenError("AKV10000: The token has no appid claim.")
        return claims

    # --- service-account tokens (workload identity) ----------------------------------------

    def issue_sa_token(
        self,
        namespace: str,
        service_account: str,
        audience: str = SA_AUDIENCE,
        expires_in: int = 3600,
    ) -> str:
        t = int(time.time())
        claims = {
            "aud": [audience],
            "iss": self.sa_issuer,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "iat": t,
            "nbf": t,
            "exp": t + expires_in,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
            },
        }
        return self._sa.sign(claims)

    def trust_sa_issuer(self, issuer: str, public_key_pem: str) -> None:
        """Accept service-account tokens from `issuer` signed with this RSA key."""
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, rsa.RSAPublicKey):
            raise TokenError("the service-account issuer key must be an RSA public key")
        self._trusted_sa[issuer] = key

    def _verify_sa(self, assertion: str) -> dict[str, Any]:
        try:
            return self._sa.verify(assertion)
        except TokenError:
            for issuer, key in self._trusted_sa.items():
                try:
                    claims = verify_with_public_key(assertion, key)
                except TokenError:
                    continue
                if claims.get("iss") == issuer:
                    return claims
            raise

    def federation_for(self, identity: Identity, assertion: str) -> Federation:
        """The federation of `identity` that accepts this service-account token."""
        claims = self._verify_sa(assertion)
        if claims.get("iss") != self.sa_issuer and claims.get("iss") not in self._trusted_sa:
            raise TokenError(
                "AADSTS700211: No matching federated identity record found for presented assertion issuer."
            )
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= int(time.time()):
            raise TokenError("AADSTS700024: Client assertion is not within its valid time range.")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        for federation in identity.federations:
            if claims.get("sub") == federation.subject and federation.audience in audiences:
                return federation
        raise TokenError(
            "AADSTS700213: No matching federated identity record found for presented assertion "
            f"subject '{claims.get('sub')}'."
        )
