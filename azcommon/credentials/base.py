"""The common shape of every credential the driver uses: an azure-core token credential with a
per-resource token cache, single-flight refresh and a strict resource check.

Subclasses only say how to ask upstream for one token (`_request`). Everything else — when a
cached token is still good, making concurrent callers share one upstream request, keeping a
still-valid token when a refresh fails transiently — lives here once.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from azcommon.errors import Internal, InvalidArgument, KvError

Clock = Callable[[], float]
# Called once per upstream token request: (kind, status), kind "nmi" | "imds" | "aad",
# status an HTTP status code ("200", "404", ...) or "error" when no answer came back.
TokenRequestHook = Callable[[str, str], None]

# Refresh this long before expiry; tokens living less than twice this refresh at half-life.
REFRESH_MARGIN = 300.0
# When a refresh fails transiently, keep serving the cached token while it lives this long,
# trying again every STALE_RETRY seconds, each refresh waiting at most REFRESH_PATIENCE.
STALE_GRACE = 60.0
STALE_RETRY = 15.0
REFRESH_PATIENCE = 10.0


def no_hook(kind: str, status: str) -> None:
    """The default metrics hook: count nothing."""


def resource_of(scope: str) -> str:
    """The v1 resource for a v2 scope: "https://vault.azure.net/.default" -> "https://vault.azure.net"."""
    resource = scope[: -len("/.default")] if scope.endswith("/.default") else scope
    return resource.rstrip("/")


@dataclass(frozen=True)
class _Cached:
    info: AccessTokenInfo
    refresh_at: float


def refresh_time(expires_on: float, now: float, upstream_refresh_on: float | None = None) -> float:
    """When a token obtained at `now` should be replaced (never later than the issuer says)."""
    lifetime = max(0.0, expires_on - now)
    when = expires_on - min(REFRESH_MARGIN, lifetime / 2)
    if upstream_refresh_on:
        when = min(when, float(upstream_refresh_on))
    return when


class KvCredential(ABC):
    """An azure-core `TokenCredential` (and `SupportsTokenInfo`) for one identity.

    Only tokens for `resource` (the cloud's Key Vault audience) are handed out: the scope comes
    from the vault's 401 challenge, and a vault URL that is not Key Vault must not be able to
    obtain, say, an ARM token for this identity. The challenge's tenant is ignored; the volume's
    tenant is authoritative (as the upstream drivers do).
    """

    kind: ClassVar[str] = ""

    def __init__(self, *, resource: str, clock: Clock, on_token_request: TokenRequestHook) -> None:
        self._resource = resource_of(resource)
        self._clock = clock
        self._hook = on_token_request
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self._inflight: Future[AccessTokenInfo] | None = None
        self._client_id = ""

    # --- what subclasses provide -------------------------------------------------------------

    @property
    @abstractmethod
    def description(self) -> str:
        """Names the identity for error messages (never a secret)."""

    @abstractmethod
    def _request(
        self, resource: str, claims: str | None, patience: float | None
    ) -> AccessTokenInfo:
        """Ask upstream for a fresh token; raise a `KvError` on failure.

        `patience`, when set, caps how long to keep retrying: a still-valid token is at hand,
        so callers should not wait out a long deadline for its replacement."""

    # --- the public surface ------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The client id of the identity, when known (for pod identity: after the first token)."""
        return self._client_id

    @property
    def resource(self) -> str:
        return self._resource

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        info = self._token(scopes, claims)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        claims = (options or {}).get("claims")
        return self._token(scopes, claims)

    def invalidate(self) -> None:
        """Forget the cached token (e.g. after Key Vault rejected it)."""
        with self._lock:
            self._cached = None

    def close(self) -> None:
        """Release resources; the shared HTTP session stays open."""
        self.invalidate()

    def __enter__(self) -> KvCredential:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # azure-core clients exit their credential when they close; the credential is shared
        # across volumes, so closing a client must not close it.
        return None

    # --- cache and single flight -------------------------------------------------------------

    def _check_scopes(self, scopes: tuple[str, ...]) -> str:
        if len(scopes) != 1:
            raise InvalidArgument(
                f"{self.description}: expected exactly one token scope, got {len(scopes)}"
            )
        resource = resource_of(scopes[0])
        if resource.lower() != self._resource.lower():
            raise InvalidArgument(
                f"{self.description}: refusing a token for {resource!r}: only the Key Vault "
                f"resource {self._resource!r} of the configured cloud is allowed (is the vault "
                "URL really a Key Vault of this cloud?)"
            )
        return resource

    def _token(self, scopes: tuple[str, ...], claims: str | None) -> AccessTokenInfo:
        resource = self._check_scopes(scopes)
        with self._lock:
            cached = self._cached
            if claims:
                # A claims challenge means the service revoked the token we hold.
                cached = self._cached = None
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.info
            flight = self._inflight
            leader = flight is None
            if flight is None:
                flight = self._inflight = Future()
        if not leader:
            return _wait(flight)
        usable = cached is not None and cached.info.expires_on - self._clock() > STALE_GRACE
        try:
            info = self._request(resource, claims, REFRESH_PATIENCE if usable else None)
        except KvError as exc:
            result = self._on_failure(exc, cached, flight)
            if result is None:
                raise
            return result
        except BaseException as exc:
            # Whatever happens, waiters must be released and the next caller must try again.
            error = Internal(f"{self.description}: unexpected {type(exc).__name__} getting a token")
            self._finish(flight, error=error)
            if isinstance(exc, Exception):
                raise error from exc
            raise
        now = self._clock()
        with self._lock:
            self._cached = _Cached(info, refresh_time(info.expires_on, now, info.refresh_on))
        self._finish(flight, info=info)
        return info

    def _on_failure(
        self, exc: KvError, cached: _Cached | None, flight: Future[AccessTokenInfo]
    ) -> AccessTokenInfo | None:
        now = self._clock()
        if not exc.final and cached is not None and cached.info.expires_on - now > STALE_GRACE:
            # Upstream is down for a moment, but the token we hold is still good: use it, and
            # let the next callers use it too until the next refresh attempt is due.
            retry_at = min(now + STALE_RETRY, cached.info.expires_on - STALE_GRACE)
            with self._lock:
                if self._cached is None or self._cached.info is cached.info:
                    self._cached = _Cached(cached.info, retry_at)
            self._finish(flight, info=cached.info)
            return cached.info
        self._finish(flight, error=exc)
        return None

    def _finish(
        self,
        flight: Future[AccessTokenInfo],
        *,
        info: AccessTokenInfo | None = None,
        error: BaseException | None = None,
    ) -> None:
        with self._lock:
            if self._inflight is flight:
                self._inflight = None
        if error is not None:
            flight.set_exception(error)
        else:
            assert info is not None
            flight.set_result(info)


def _wait(flight: Future[AccessTokenInfo]) -> AccessTokenInfo:
    try:
        return flight.result()
    except KvError as exc:
        # A fresh instance per waiter: one exception object raised in many threads would share
        # (and keep extending) a single traceback.
        raise type(exc)(str(exc)) from None


def token_info(token: str, expires_on: float) -> AccessTokenInfo:
    return AccessTokenInfo(token, int(expires_on))
