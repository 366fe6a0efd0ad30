"""One request to a vault under one policy: the vault's gate, retries, metrics, and the
classification of Key Vault's final answer.

SDK retries are off and replaced by this policy: 429/5xx/timeouts are retried with backoff
honouring Retry-After, 401/403/404 are final (a 401 first invalidates a cached token, once). A 429
also closes the vault's gate for its Retry-After, so concurrent and later requests wait instead of
hammering a throttling vault.

Before the 429, each vault also has a client-side budget (`VaultGate`, a token bucket shared by
publish and rotation): Key Vault's published service limits allow 4,000 secret and software-key
GET transactions per 10 seconds per vault per region (and a subscription-wide 5x that), see
https://learn.microsoft.com/azure/key-vault/general/service-limits. The default budget is that
figure; `--keyvault-rate-limit` lowers it when several nodes or applications share a vault.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from azcommon.errors import (
    InvalidArgument,
    KvError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from azcommon.retry import Deadline, parse_retry_after
from driver.metrics import Metrics
from driver.model import ObjectSpec

T = TypeVar("T")
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class VaultRef:
    name: str
    url: str


# Key Vault's published limit for secrets and software-key GETs: 4,000 per 10 s per vault.
DEFAULT_RATE_LIMIT = 4000
DEFAULT_RATE_WINDOW = 10.0


class ObjectDisabled(PermissionDenied):
    """Key Vault's 403 for a disabled object or version (what `optional` objects tolerate)."""


class VaultGate:
    """Per vault: "do not send before" times set by 429 Retry-After answers, and a client-side
    token bucket of `limit` requests per `window` seconds (burst up to `limit`)."""

    def __init__(
        self,
        clock: Callable[[], float],
        limit: int = DEFAULT_RATE_LIMIT,
        window: float = DEFAULT_RATE_WINDOW,
    ) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.limit = limit  # 0: no client-side limit
        self.window = window
        self._tokens: dict[str, tuple[float, float]] = {}  # vault -> (tokens, at)

    def reserve(self, vault: str) -> float:
        """Take one request from the vault's budget; returns how long to wait before sending.

        The request is booked now (tokens may go negative), so concurrent callers queue up
        behind each other instead of all waking at once."""
        if self.limit <= 0:
            return 0.0
        rate = self.limit / self.window
        with self._lock:
            now = self._clock()
            tokens, at = self._tokens.get(vault, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - at) * rate) - 1.0
            self._tokens[vault] = (tokens, now)
            return 0.0 if tokens >= 0 else -tokens / rate

    def close_for(self, vault: str, seconds: float) -> None:
        with self._lock:
            self._until[vault] = max(self._until.get(vault, 0.0), self._clock() + seconds)

    def wait_time(self, vault: str) -> float:
        with self._lock:
            return max(0.0, self._until.get(vault, 0.0) - self._clock())


class VaultCalls:
    """Sends one logical request to a vault: waits for the vault's gate, retries what may be
    retried within the deadline, counts and times every attempt, and turns the final answer
    into the error kubelet should see."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        attempts: int,
        deadline: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        rate_limit: int,
        rate_window: float,
    ) -> None:
        self._metrics = metrics
        self._attempts = attempts
        self._deadline = deadline
        self._clock = clock
        self._sleep = sleep
        self.gate = VaultGate(clock, rate_limit, rate_window)

    def call(
        self,
        vault: VaultRef,
        obj: ObjectSpec,
        version: str,
        operation: str,
        fn: Callable[[], T],
        credential: TokenCredential | None = None,
    ) -> T:
        deadline = Deadline(self._deadline, self._clock, self._sleep)
        reauthenticated = False
        while True:
            budget = self.gate.reserve(vault.name)
            if budget > 0:
                # Over our own budget for the vault: wait our turn rather than earn a 429.
                self._metrics.rate_limited.labels(vault.name).inc()
                if budget > deadline.remaining():
                    raise ResourceExhausted(
                        describe(vault, obj, version)
                        + f": the client-side request budget of vault {vault.name} is used up"
                        f" (next slot in {budget:.0f}s)"
                    )
                self._sleep(budget)
            wait = self.gate.wait_time(vault.name)
            if wait > 0:
                if wait > deadline.remaining():
                    raise ResourceExhausted(
                        describe(vault, obj, version)
                        + f": vault {vault.name} is throttling requests (retry in {wait:.0f}s)"
                    )
                self._sleep(wait)
            t0 = time.perf_counter()
            status = "error"
            try:
                result = fn()
                status = "200"
                return result
            except KvError:
                raise  # from the credential: already classified
            except HttpResponseError as exc:
                code = exc.status_code or 0
                status = str(code)
                headers = getattr(exc.response, "headers", None) or {}
                retry_after = parse_retry_after(headers.get("Retry-After"))
                if code == 429 and retry_after:
                    self.gate.close_for(vault.name, retry_after)
                invalidate = getattr(credential, "invalidate", None)
                if code == 401 and not reauthenticated and callable(invalidate):
                    # A cached token the vault no longer accepts: fetch a fresh one, once.
                    invalidate()
                    reauthenticated = True
                    continue
                if code not in RETRYABLE or not self._retry(deadline, retry_after):
                    raise _classify(vault, obj, version, exc) from None
            except (ServiceRequestError, ServiceResponseError) as exc:
                if not self._retry(deadline, None):
                    raise Unavailable(
                        describe(vault, obj, version)
                        + f": no answer from {vault.url} ({type(exc).__name__})"
                    ) from None
            finally:
                self._metrics.keyvault_requests.labels(vault.name, operation, status).inc()
                self._metrics.keyvault_seconds.labels(vault.name, operation).observe(
                    time.perf_counter() - t0
                )

    def _retry(self, deadline: Deadline, retry_after: float | None) -> bool:
        """Wait for the next attempt; False when attempts or time are used up."""
        return deadline.attempts + 1 < self._attempts and deadline.wait(retry_after)


def describe(vault: VaultRef, obj: ObjectSpec, version: str) -> str:
    """How errors name one object (never its content)."""
    return f"{obj.type.value} {obj.name!r} (version {version or 'latest'}) in vault {vault.name}"


def _classify(vault: VaultRef, obj: ObjectSpec, version: str, exc: HttpResponseError) -> KvError:
    """A final Key Vault answer as the error kubelet (and the operator) should see."""
    code = exc.status_code or 0
    service_code = ""
    if exc.error is not None and exc.error.code:
        service_code = str(exc.error.code)
    detail = f"{describe(vault, obj, version)}: HTTP {code}" + (
        f" {service_code}" if service_code else ""
    )
    if code == 401:
        return Unauthenticated(detail + " (Key Vault rejected the token)")
    if code == 403 and "disabled" in _inner_code(exc).lower():
        return ObjectDisabled(detail + " (the object or version is disabled)")
    if code == 403:
        return PermissionDenied(
            detail + " (the identity lacks permission in the vault's access policy,"
            " or the version is disabled)"
        )
    if code == 404:
        return NotFound(detail)
    if code == 429:
        return ResourceExhausted(detail + " (throttled; kubelet will retry)")
    if code == 400:
        return InvalidArgument(detail)
    return Unavailable(detail)


def _inner_code(exc: HttpResponseError) -> str:
    """Key Vault's inner error code (e.g. "SecretDisabled"), when the answer has one."""
    inner = getattr(exc.error, "innererror", None) if exc.error is not None else None
    if isinstance(inner, Mapping):
        return str(inner.get("code", ""))
    return str(getattr(inner, "code", "") or "")
