"""Tokens for an identity: fetched from IMDS (user-assigned identities) or Entra ID (service
principals), and cached per (identity, resource).

Fetching (`TokenFetcher`):
- type 0: IMDS `GET <imds>/metadata/identity/oauth2/token?api-version=2018-02-01&resource=..
  &client_id=<spec.clientID>` with `Metadata: true` (azcommon's IMDS client, which retries
  404/410/429/5xx within a deadline). NMI runs in the host network, so its own calls are not
  intercepted.
- type 1: Entra ID client credentials with the secret from `spec.clientPassword` (the key
  `clientSecret`, or the Secret's only key; upstream took whichever key came first), through
  azure-identity's ClientSecretCredential (azcommon's ServicePrincipalCredential).
- type 2: Entra ID with a client certificate: the Secret's `certificate` (PKCS#12) and
  `password`, through azure-identity's CertificateCredential.
The authority is the identity's `adEndpoint` or the configured one.

Caching (`TokenCache`), ours (upstream fetched on every request):
- one entry per key = (identity namespace, name, type, client id, resource id, secret
  reference) x resource: two identities never share a token, even with the same client id;
- refreshed ahead of expiry: from `refresh_at` (expiry minus the margin, at most half the
  lifetime) the cached token is still served while one background fetch replaces it;
- one fetch in flight per key: concurrent first requests wait for the same fetch;
- a failed fetch is not cached: the next request tries again.
Nothing here logs a token or a secret.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import requests
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.identity import CertificateCredential
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Secret

from azcommon.cloud import Cloud
from azcommon.credentials.aad import ServicePrincipalCredential, map_identity_error
from azcommon.credentials.imds import ImdsCredential
from azcommon.errors import FailedPrecondition, KvError, NotFound, PermissionDenied, Unavailable
from azcommon.http import make_transport
from podidentity.crds import AzureIdentity, IdentityType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Token:
    """A token and its times (epoch seconds). `repr` never shows the token."""

    access_token: str = field(repr=False)
    expires_on: int
    not_before: int
    resource: str
    client_id: str
    token_type: str = "Bearer"

    def imds_body(self, now: float) -> dict[str, str]:
        """IMDS's JSON shape as NMI answers it: every number a string (as upstream)."""
        return {
            "access_token": self.access_token,
            "refresh_token": "",
            "expires_in": str(max(0, int(self.expires_on - now))),
            "expires_on": str(self.expires_on),
            "not_before": str(self.not_before),
            "resource": self.resource,
            "token_type": self.token_type,
        }


CacheKey = tuple[str, str, int, str, str, str, str]


def identity_key(identity: AzureIdentity) -> tuple[str, str, int, str, str, str]:
    secret = identity.client_password
    return (
        identity.meta.namespace,
        identity.meta.name,
        int(identity.type),
        identity.client_id.lower(),
        identity.resource_id.lower(),
        f"{secret.namespace}/{secret.name}" if secret else "",
    )


class TokenFetcher:
    """Gets one fresh token for (identity, resource); no caching here."""

    def __init__(
        self,
        *,
        imds_endpoint: str,
        authority_host: str,
        ca_bundle: str,
        request_timeout: float,
        deadline: float,
        secrets: Client | None,
        session: requests.Session,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._imds = imds_endpoint.rstrip("/") + "/metadata/identity/oauth2/token"
        self._authority = authority_host.rstrip("/")
        self._ca = ca_bundle
        self._timeout = request_timeout
        self._deadline = deadline
        self._secrets = secrets
        self._session = session
        self._clock = clock
        self.fetches = 0

    def fetch(self, identity: AzureIdentity, resource: str) -> Token:
        self.fetches += 1
        now = int(self._clock())
        if identity.type is IdentityType.USER_ASSIGNED_MSI:
            credential = ImdsCredential(
                session=self._session, endpoint=self._imds, client_id=identity.client_id,
                resource=resource, deadline=self._deadline, request_timeout=self._timeout,
            )  # fmt: skip
            info = credential.get_token_info(resource.rstrip("/") + "/.default")
        elif identity.type is IdentityType.SERVICE_PRINCIPAL:
            secret = self._secret(identity)
            key = "clientSecret" if "clientSecret" in secret else None
            if key is None:
                if len(secret) != 1:
                    raise FailedPrecondition(
                        f"{self._where(identity)}: the Secret has keys {sorted(secret)}; it needs "
                        "a key clientSecret (or exactly one key) holding the client secret"
                    )
                key = next(iter(secret))
            credential_sp = ServicePrincipalCredential(
                session=self._session, cloud=self._cloud(identity, resource),
                tenant_id=identity.tenant_id, client_id=identity.client_id,
                client_secret=secret[key].decode(), request_timeout=self._timeout,
            )  # fmt: skip
            try:
                info = credential_sp.get_token_info(resource.rstrip("/") + "/.default")
            finally:
                credential_sp.close()
        else:
            info = self._certificate_token(identity, resource)
        return Token(info.token, int(info.expires_on), now, resource, identity.client_id)

    def _certificate_token(self, identity: AzureIdentity, resource: str) -> AccessTokenInfo:
        secret = self._secret(identity)
        if "certificate" not in secret:
            raise FailedPrecondition(
                f"{self._where(identity)}: the Secret needs the keys certificate (PKCS#12) and "
                f"password; it has {sorted(secret)}"
            )
        cloud = self._cloud(identity, resource)
        try:
            credential = CertificateCredential(
                identity.tenant_id, identity.client_id,
                certificate_data=secret["certificate"],
                password=secret.get("password") or None,
                authority=cloud.authority_host,
                transport=make_transport(self._session, self._timeout, cloud.ca_bundle),
                disable_instance_discovery=True,
                retry_total=2,
            )  # fmt: skip
        except ValueError:
            raise FailedPrecondition(
                f"{self._where(identity)}: the certificate could not be loaded (is it PKCS#12, "
                "and is password right?)"
            ) from None
        try:
            return credential.get_token_info(resource.rstrip("/") + "/.default")
        except (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ValueError,
        ) as exc:
            raise map_identity_error(
                exc, f"service principal {identity.client_id}", cloud.authority_host, ""
            ) from None
        finally:
            credential.close()

    def _cloud(self, identity: AzureIdentity, resource: str) -> Cloud:
        authority = (identity.ad_endpoint or self._authority).rstrip("/")
        return Cloud("nmi", authority, resource, "", ca_bundle=self._ca)

    @staticmethod
    def _where(identity: AzureIdentity) -> str:
        ref = identity.client_password
        secret = f"{ref.namespace}/{ref.name}" if ref else "(none)"
        return f"AzureIdentity {identity.meta.ref} (type {int(identity.type)}), Secret {secret}"

    def _secret(self, identity: AzureIdentity) -> dict[str, bytes]:
        ref = identity.client_password
        if ref is None or not ref.name:
            raise FailedPrecondition(
                f"AzureIdentity {identity.meta.ref} is a service principal (type "
                f"{int(identity.type)}) but spec.clientPassword names no Secret"
            )
        if self._secrets is None:
            raise FailedPrecondition("service-principal identities need API access for Secrets")
        namespace = ref.namespace or identity.meta.namespace
        try:
            secret = self._secrets.get(Secret, ref.name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                raise NotFound(f"{self._where(identity)}: the Secret does not exist") from None
            if exc.status.code == 403:
                raise PermissionDenied(
                    f"{self._where(identity)}: NMI may not read it (check NMI's RBAC)"
                ) from None
            raise Unavailable(f"{self._where(identity)}: API error {exc.status.code}") from None
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


@dataclass
class _Entry:
    token: Token
    refresh_at: float


class TokenCache:
    """Per (identity, resource) cache in front of a fetch function; see the module docstring."""

    def __init__(
        self,
        fetch: Callable[[AzureIdentity, str], Token],
        *,
        enabled: bool = True,
        margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self.enabled = enabled
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[CacheKey, _Entry] = {}
        self._inflight: dict[CacheKey, Future[Token]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, identity: AzureIdentity, resource: str) -> Token:
        if not self.enabled:
            self.misses += 1
            return self._fetch(identity, resource)
        key: CacheKey = (*identity_key(identity), resource.rstrip("/").lower())
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            valid = entry is not None and now < entry.token.expires_on - 30
            if entry is not None and valid and now < entry.refresh_at:
                self.hits += 1
                return entry.token
            flight = self._inflight.get(key)
            leader = flight is None
            if flight is None:
                flight = self._inflight[key] = Future()
        if valid and entry is not None:
            # Still good: serve it, and let one background fetch replace it.
            self.hits += 1
            if leader:
                threading.Thread(
                    target=self._run, args=(key, identity, resource, flight), daemon=True
                ).start()
            return entry.token
        self.misses += 1
        if leader:
            self._run(key, identity, resource, flight)
        return flight.result()

    def _run(
        self, key: CacheKey, identity: AzureIdentity, resource: str, flight: Future[Token]
    ) -> None:
        try:
            token = self._fetch(identity, resource)
        except BaseException as exc:
            with self._lock:
                self._inflight.pop(key, None)
            if not isinstance(exc, KvError):
                log.warning("token fetch for %s failed: %s", identity.meta.ref, type(exc).__name__)
            flight.set_exception(exc)
            return
        now = self._clock()
        lifetime = max(0.0, token.expires_on - now)
        refresh_at = token.expires_on - min(self._margin, lifetime / 2)
        with self._lock:
            # Bounded memory: expired tokens (deleted or changed identities) go on every insert.
            for old in [k for k, e in self._entries.items() if e.token.expires_on <= now]:
                del self._entries[old]
            self._entries[key] = _Entry(token, refresh_at)
            self._inflight.pop(key, None)
        flight.set_result(token)
