"""The identity blocks of VMs and scale sets, through the official SDK (azure-mgmt-compute).

- `get(target)` reads the user-assigned identities (lower-cased ids) and whether the
  system-assigned one is on;
- `update(target, state, add, remove)` PATCHes only the delta (`{}` adds, `null` removes) in
  requests of at most `MAX_CHANGES` entries (ARM's "Assign exceed limit '150' in one request"),
  adds before removes so no request empties the set on the way, with `type` following what
  remains (UserAssigned, "SystemAssigned, UserAssigned", SystemAssigned or None). Each PATCH is
  a long-running operation the SDK polls to the end.
- **Retry-After per subscription**: a 429 closes the subscription's gate until the time ARM
  named, for every thread, and the request is retried after it (the SDK's own retries are off
  so that the gate, not each thread on its own, decides).
- **Refused identities**: `LinkedAuthorizationFailed` and `FailedIdentityOperation` name the
  identities ARM will not attach; they are dropped and the rest sent again, and the refused ids
  come back to the caller (which reports them on their bindings).

Counters (`stats`) are for tests and benchmarks. No token or secret reaches a log line.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from podidentity.mic.cloud import ARM_SCOPE
from podidentity.mic.model import Target

log = logging.getLogger(__name__)

MAX_CHANGES = 150
_IDENTITY_ID = re.compile(
    r"/subscriptions/[^/,'\"\s]+/resourcegroups/[^/,'\"\s]+/providers/"
    r"microsoft\.managedidentity/userassignedidentities/[^/,'\"\s]+",
    re.IGNORECASE,
)
_REFUSING_CODES = ("LinkedAuthorizationFailed", "FailedIdentityOperation")


@dataclass(frozen=True)
class Identities:
    """A VM's or scale set's identity block: user-assigned ids (lower case), system on/off."""

    user: frozenset[str]
    system: bool


@dataclass
class ArmStats:
    gets: int = 0
    patches: int = 0
    throttled: int = 0
    refused: int = 0
    failures: int = 0


class ArmFailure(Exception):
    """An ARM request failed for good (after retries); the message is safe to log."""


class NotActing(Exception):
    """The caller's guard said stop (leadership lost) before an ARM request."""


@dataclass
class _Gate:
    """The earliest time (monotonic) a subscription may be called again."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    not_before: float = 0.0


class Arm:
    """ARM access for MIC over one `ComputeManagementClient` per subscription."""

    def __init__(
        self,
        credential: Any,
        endpoint: str,
        *,
        ca_bundle: str | None = None,
        max_retries: int = 5,
        guard: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credential = credential
        self._endpoint = endpoint
        self._ca_bundle = ca_bundle
        self._max_retries = max_retries
        self._guard = guard
        self._sleep = sleep
        self._clients: dict[str, Any] = {}
        self._gates: dict[str, _Gate] = {}
        self._lock = threading.Lock()
        self.stats = ArmStats()

    def _client(self, subscription: str) -> Any:
        from azure.mgmt.compute import ComputeManagementClient

        with self._lock:
            client = self._clients.get(subscription)
            if client is None:
                kwargs: dict[str, Any] = {}
                if self._ca_bundle:
                    kwargs["connection_verify"] = self._ca_bundle
                client = ComputeManagementClient(
                    self._credential, subscription, base_url=self._endpoint,
                    credential_scopes=[ARM_SCOPE], retry_total=0, **kwargs,
                )  # fmt: skip
                self._clients[subscription] = client
            return client

    def _gate(self, subscription: str) -> _Gate:
        with self._lock:
            return self._gates.setdefault(subscription, _Gate())

    def _wait_gate(self, subscription: str) -> None:
        gate = self._gate(subscription)
        while True:
            with gate.lock:
                wait = gate.not_before - time.monotonic()
            if wait <= 0:
                return
            self._sleep(min(wait, 1.0))
            self._guard()

    def _call(self, target: Target, what: str, fn: Callable[[Any], Any]) -> Any:
        """`fn(client)` with the gate, the guard and retries for throttling and server errors."""
        attempt = 0
        while True:
            self._guard()
            self._wait_gate(target.subscription)
            try:
                return fn(self._client(target.subscription))
            except HttpResponseError as exc:
                status = exc.status_code or 0
                if status == 429:
                    self.stats.throttled += 1
                    delay = _retry_after(exc)
                    gate = self._gate(target.subscription)
                    with gate.lock:
                        gate.not_before = max(gate.not_before, time.monotonic() + delay)
                    log.warning("ARM throttled %s on %s; waiting %.0f s (Retry-After)",
                                what, target, delay)  # fmt: skip
                elif status >= 500 or status == 408:
                    log.info("ARM %s on %s answered %s; retrying", what, target, status)
                    self._sleep(min(30.0, 0.5 * 2**attempt))
                else:
                    raise
            except (ServiceRequestError, ServiceResponseError) as exc:
                log.info("ARM %s on %s: %s; retrying", what, target, type(exc).__name__)
                self._sleep(min(30.0, 0.5 * 2**attempt))
            attempt += 1
            if attempt > self._max_retries:
                self.stats.failures += 1
                raise ArmFailure(f"ARM {what} on {target} still failing after {attempt} attempts")

    # -- reads ----------------------------------------------------------------------------------

    def get(self, target: Target) -> Identities:
        def read(client: Any) -> Any:
            self.stats.gets += 1
            ops = client.virtual_machine_scale_sets if target.kind == "vmss" else (
                client.virtual_machines)  # fmt: skip
            return ops.get(target.resource_group, target.name)

        try:
            resource = self._call(target, "GET", read)
        except HttpResponseError as exc:
            self.stats.failures += 1
            raise ArmFailure(f"ARM GET {target}: {_describe(exc)}") from None
        identity = resource.identity
        if identity is None:
            return Identities(frozenset(), False)
        # The SDK gives an enum whose str() is its Python name: compare its value.
        kind = str(getattr(identity.type, "value", identity.type) or "")
        users = identity.user_assigned_identities or {}
        return Identities(frozenset(k.lower() for k in users), "systemassigned" in kind.lower())

    # -- writes ---------------------------------------------------------------------------------

    def update(
        self, target: Target, state: Identities, add: set[str], remove: set[str]
    ) -> tuple[Identities, set[str]]:
        """Attach `add` and detach `remove`; the state after it and the ids ARM refused."""
        add = {a.lower() for a in add} - state.user
        remove = {r.lower() for r in remove} & state.user
        refused: set[str] = set()
        attempts = 0
        while add or remove:
            changes: list[tuple[str, bool]] = [(a, True) for a in sorted(add)]
            changes += [(r, False) for r in sorted(remove)]
            chunk = changes[:MAX_CHANGES]
            try:
                state = self._patch(target, state, chunk)
            except HttpResponseError as exc:
                named = _refused_ids(exc) & add
                attempts += 1
                if not named or attempts > 3:
                    self.stats.failures += 1
                    raise ArmFailure(f"ARM PATCH {target}: {_describe(exc)}") from None
                self.stats.refused += len(named)
                log.warning("ARM refused %d identities on %s (%s); assigning the others",
                            len(named), target, _code(exc))  # fmt: skip
                refused |= named
                add -= named
                continue
            for rid, adding in chunk:
                (add if adding else remove).discard(rid)
        return state, refused

    def _patch(
        self, target: Target, state: Identities, chunk: list[tuple[str, bool]]
    ) -> Identities:
        users = set(state.user)
        for rid, adding in chunk:
            (users.add if adding else users.discard)(rid)
        identity: dict[str, Any]
        if users:
            kind = "SystemAssigned, UserAssigned" if state.system else "UserAssigned"
            identity = {"type": kind,
                        "userAssignedIdentities": {r: ({} if a else None) for r, a in chunk}}  # fmt: skip
        else:
            identity = {"type": "SystemAssigned" if state.system else "None"}

        def write(client: Any) -> Any:
            self.stats.patches += 1
            ops = client.virtual_machine_scale_sets if target.kind == "vmss" else (
                client.virtual_machines)  # fmt: skip
            poller = ops.begin_update(
                target.resource_group, target.name, {"identity": identity}, polling_interval=0.2
            )
            return poller.result()

        resource = self._call(target, "PATCH", write)
        result = resource.identity
        if result is not None and result.user_assigned_identities is not None:
            users = {k.lower() for k in result.user_assigned_identities}
        return Identities(frozenset(users), state.system)


def _retry_after(exc: HttpResponseError) -> float:
    response: Any = exc.response
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(raw)) if raw else 5.0
    except ValueError:
        return 5.0


def _code(exc: HttpResponseError) -> str:
    error = exc.error
    return str(error.code) if error is not None and error.code else f"HTTP {exc.status_code}"


def _describe(exc: HttpResponseError) -> str:
    error = exc.error
    message = str(error.message) if error is not None and error.message else str(exc.reason)
    return f"{_code(exc)}: {message[:500]}"


def _refused_ids(exc: HttpResponseError) -> set[str]:
    """The identity ids a LinkedAuthorizationFailed/FailedIdentityOperation answer names."""
    error = exc.error
    code = str(error.code) if error is not None else ""
    text = str(error.message) if error is not None and error.message else str(exc.message)
    if code not in _REFUSING_CODES and not any(c in text for c in _REFUSING_CODES):
        return set()
    return {m.group(0).lower() for m in _IDENTITY_ID.finditer(text)}
