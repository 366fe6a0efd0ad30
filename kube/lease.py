"""Leader election on a `coordination.k8s.io/v1` Lease.

One replica holds the Lease (`spec.holderIdentity`) and renews it (`spec.renewTime`) every
`retry` seconds; another takes it over only when the holder's last renewal is older than
`duration` seconds. Every write carries the Lease's resourceVersion, so two replicas racing for
it cannot both win (the loser gets 409 Conflict and reads again).

A holder that could not renew for `renew_deadline` seconds (API server unreachable, Lease taken
away) stops being leader *before* another replica may take over (`renew_deadline` <
`duration`): `is_leader` turns false and `lost` is set at once, so the component checks
`is_leader` before each action and stops. A replica that releases the Lease on a clean shutdown
clears `holderIdentity` and sets a 1 s duration, so the next replica takes over without waiting.

Upstream MIC used an Endpoints lock with 15 s / 7.5 s / 3.75 s; those are the defaults here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2
from lightkube import ApiError, Client
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTimings:
    """Seconds: the Lease's validity, how long a holder keeps trying to renew, how often."""

    duration: float = 15.0
    renew_deadline: float = 7.5
    retry: float = 3.75

    def __post_init__(self) -> None:
        if not 0 < self.retry < self.renew_deadline < self.duration:
            raise ValueError(
                "leader election timings must satisfy 0 < retry < renew deadline < duration "
                f"(got {self.retry}, {self.renew_deadline}, {self.duration})"
            )


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Campaigns for the Lease `namespace/name` as `identity` on its own daemon thread."""

    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings = LeaseTimings(),
        *,
        on_started: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._leader = threading.Event()
        self.lost = threading.Event()
        """Set when this replica held the Lease and then lost it (never cleared)."""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renew = 0.0  # monotonic time of the last successful acquire/renew

    @property
    def is_leader(self) -> bool:
        """Whether this replica holds a Lease it renewed within the renew deadline."""
        if not self._leader.is_set():
            return False
        if time.monotonic() - self._last_renew > self.timings.renew_deadline:
            # Checked here too, not only on the thread: a stalled thread must not keep us acting.
            self._lose("the lease was not renewed within the renew deadline")
            return False
        return True

    def wait_leader(self, timeout: float | None = None) -> bool:
        return self._leader.wait(timeout)

    def start(self) -> LeaderElector:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
            self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop campaigning; with `release`, hand the Lease over at once if we hold it."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.timings.retry + 5)
        if release and self._leader.is_set():
            self._leader.clear()
            try:
                self._release()
            except Exception:  # best effort: the Lease then expires on its own
                log.info("releasing the lease %s/%s failed", self.namespace, self.name)

    # -- the campaign ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                held = self._try_acquire_or_renew()
            except ApiError as exc:
                log.warning("lease %s/%s: API %s %s", self.namespace, self.name,
                            exc.status.code, exc.status.reason)  # fmt: skip
                held = False
            except (httpx2.HTTPError, OSError, ValueError, RuntimeError) as exc:
                log.info("lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
                held = False
            if held:
                self._last_renew = time.monotonic()
                if not self._leader.is_set():
                    log.info("became leader (lease %s/%s)", self.namespace, self.name)
                    self._leader.set()
                    if self._on_started is not None:
                        self._on_started()
            elif (
                self._leader.is_set()
                and time.monotonic() - self._last_renew > self.timings.renew_deadline
            ):
                self._lose("could not renew the lease")
            self._stopping.wait(self.timings.retry)

    def _lose(self, why: str) -> None:
        if self._leader.is_set():
            self._leader.clear()
            self.lost.set()
            log.warning("lost leadership (lease %s/%s): %s", self.namespace, self.name, why)
            if self._on_stopped is not None:
                self._on_stopped()

    def _try_acquire_or_renew(self) -> bool:
        now = _now()
        try:
            lease = self._client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            return self._create(now)
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity or ""
        if holder and holder != self.identity:
            renewed = spec.renewTime or spec.acquireTime
            duration = float(spec.leaseDurationSeconds or self.timings.duration)
            if renewed is not None and (now - renewed).total_seconds() < duration:
                return False  # another replica holds a valid lease
        transitions = spec.leaseTransitions or 0
        if holder != self.identity:
            transitions += 1
            spec.acquireTime = now
        spec.holderIdentity = self.identity
        spec.renewTime = now
        spec.leaseDurationSeconds = int(self.timings.duration)
        spec.leaseTransitions = transitions
        lease.spec = spec
        try:
            self._client.replace(lease)  # carries resourceVersion: a racing writer gets 409
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise
        return True

    def _create(self, now: datetime) -> bool:
        lease = Lease(
            metadata=ObjectMeta(name=self.name, namespace=self.namespace),
            spec=LeaseSpec(
                holderIdentity=self.identity,
                acquireTime=now,
                renewTime=now,
                leaseDurationSeconds=int(self.timings.duration),
                leaseTransitions=0,
            ),
        )
        try:
            self._client.create(lease)
        except ApiError as exc:
            if exc.status.code == 409:
                return False  # someone else created it first
            raise
        return True

    def _release(self) -> None:
        lease = self._client.get(Lease, self.name, namespace=self.namespace)
        if lease.spec is None or lease.spec.holderIdentity != self.identity:
            return
        lease.spec.holderIdentity = None
        lease.spec.leaseDurationSeconds = 1
        lease.spec.renewTime = _now()
        self._client.replace(lease)
