"""MIC's core: from what the caches say to the writes and ARM calls that make it true.

See the package docstring for the cycle. State lives here and only here:

- `_dirty`: pods whose desired AzureAssignedIdentities must be recomputed (the change callbacks
  of the caches add to it; nothing else is recomputed);
- `_wants`: the last computed desired AzureAssignedIdentities of each pod, and `_in_use`, how
  many of them need each identity on each VM or scale set (the "in use" rule);
- `_arm`: the identity blocks read from or written to ARM (a VM or scale set is read only when
  there is work for it and it was not read before);
- `_expect`: the resourceVersion of each object we wrote last (None: deleted), so a cache that
  lags behind our own writes defers the pod instead of repeating the write;
- `_refused`: (VM or scale set, identity) pairs ARM refused, and until when not to ask again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from lightkube import ApiError

from kube.cache import Change
from kube.events import NORMAL, WARNING, Ref
from podidentity.crds import (
    API_VERSION,
    AssignedState,
    AzureAssignedIdentity,
    AzureIdentity,
    AzureIdentityBinding,
    AzurePodIdentityException,
    IdentityType,
    Meta,
)
from podidentity.mic.arm import Arm, ArmFailure, Identities, NotActing
from podidentity.mic.model import NodeView, PodKey, PodView, Problem, Target, Want, wants_for
from podidentity.mic.writer import AssignedWriter

log = logging.getLogger(__name__)

EXPECTATION_TTL = 30.0  # seconds before an unmet expectation is given up (a missed event)
FAILURE_RETRY = 30.0  # seconds before pods whose ARM update failed are tried again


@dataclass(frozen=True)
class ObservedAssigned:
    """An AzureAssignedIdentity as the cache holds it, with what removal needs."""

    aai: AzureAssignedIdentity
    deleting: bool
    finalizers: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.aai.meta.namespace, self.aai.meta.name)

    @property
    def pod_key(self) -> PodKey:
        return (self.aai.pod_namespace, self.aai.pod)

    @property
    def resource_id(self) -> str:
        identity = self.aai.identity
        if identity.type != IdentityType.USER_ASSIGNED_MSI:
            return ""
        return identity.resource_id.lower()


class Cache(Protocol):
    """What MIC reads of a watch-fed cache (`kube.cache.WatchCache`)."""

    def get(self, namespace: str, name: str) -> Any: ...
    def by(self, index: str, value: str) -> list[Any]: ...
    def items(self) -> list[Any]: ...


@dataclass
class Caches:
    """The six caches MIC reads; indexes as named in `app.py`."""

    pods: Cache  # PodView; indexes selector, node, namespace
    nodes: Cache  # NodeView
    identities: Cache  # AzureIdentity; index none
    bindings: Cache  # AzureIdentityBinding; indexes selector, identity ("ns/name")
    exceptions: Cache  # AzurePodIdentityException; index namespace
    assigned: Cache  # ObservedAssigned; index pod ("ns/name")


class Reporter(Protocol):
    def record(self, ref: Ref, reason: str, message: str, type: str = NORMAL) -> None: ...


@dataclass
class Work:
    """What one cycle does for one VM or scale set (or, for target None, without ARM)."""

    creates: list[Want] = field(default_factory=list)
    updates: list[tuple[Want, ObservedAssigned]] = field(default_factory=list)
    confirms: list[tuple[Want, ObservedAssigned]] = field(default_factory=list)
    removals: list[ObservedAssigned] = field(default_factory=list)
    released: set[str] = field(default_factory=set)  # ids an update moved away from

    def __bool__(self) -> bool:
        return bool(self.creates or self.updates or self.confirms or self.removals)


@dataclass
class CycleStats:
    cycles: int = 0
    pods_recomputed: int = 0
    deferred: int = 0
    targets_worked: int = 0
    failures: int = 0


class Reconciler:
    """Keeps AzureAssignedIdentities and ARM identity blocks equal to what pods, nodes,
    identities, bindings and exceptions ask for. `cycle()` runs on one thread; the change
    callbacks may run on any."""

    def __init__(
        self,
        caches: Caches,
        writer: AssignedWriter,
        arm: Arm,
        reporter: Reporter,
        *,
        namespaced: bool = True,
        immutable: Iterable[str] = (),
        refused_retry: float = 300.0,
        arm_concurrency: int = 16,
        api_concurrency: int = 16,
        guard: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.caches = caches
        self.writer = writer
        self.arm = arm
        self.reporter = reporter
        self.namespaced = namespaced
        self.immutable = {i.lower() for i in immutable}
        self.refused_retry = refused_retry
        self._guard = guard
        self._clock = clock
        self._lock = threading.Lock()
        self._dirty: set[PodKey] = set()
        self._wake = threading.Event()
        self._wants: dict[PodKey, dict[str, Want]] = {}
        self._in_use: dict[Target, Counter[str]] = {}
        self._arm: dict[Target, Identities] = {}
        self._arm_lock = threading.Lock()
        self._expect: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._expect_lock = threading.Lock()
        self._refused: dict[tuple[Target, str], float] = {}
        self._retry_at: dict[PodKey, float] = {}
        self._reported: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
        self._arm_pool = ThreadPoolExecutor(max(1, arm_concurrency), thread_name_prefix="mic-arm")
        self._api_pool = ThreadPoolExecutor(max(1, api_concurrency), thread_name_prefix="mic-api")
        self.stats = CycleStats()

    def close(self) -> None:
        self._arm_pool.shutdown(wait=False, cancel_futures=True)
        self._api_pool.shutdown(wait=False, cancel_futures=True)

    # -- what a change touches ------------------------------------------------------------------

    def mark(self, keys: Iterable[PodKey]) -> None:
        with self._lock:
            before = len(self._dirty)
            self._dirty.update(keys)
            changed = len(self._dirty) != before
        if changed:
            self._wake.set()

    def mark_all(self) -> None:
        """A resync: every pod MIC knows of, and every pod an AzureAssignedIdentity names."""
        keys = {p.key for p in self.caches.pods.items()}
        keys.update(o.pod_key for o in self.caches.assigned.items())
        with self._lock:
            keys.update(self._wants)
        self.mark(keys)

    def wait(self, timeout: float) -> bool:
        woke = self._wake.wait(timeout)
        self._wake.clear()
        return woke

    @property
    def pending(self) -> bool:
        with self._lock:
            return bool(self._dirty)

    def _pods(self, index: str, values: Iterable[str]) -> set[PodKey]:
        keys: set[PodKey] = set()
        for value in values:
            keys.update(p.key for p in self.caches.pods.by(index, value))
        return keys

    def on_pod(self, change: Change[PodView]) -> None:
        self.mark([change.key])

    def on_node(self, change: Change[NodeView]) -> None:
        self.mark(self._pods("node", [change.key[1]]))

    def on_binding(self, change: Change[AzureIdentityBinding]) -> None:
        selectors = {b.selector for b in (change.old, change.new) if b is not None}
        self.mark(self._pods("selector", selectors))

    def on_identity(self, change: Change[AzureIdentity]) -> None:
        ns, name = change.key
        bindings = self.caches.bindings.by("identity", f"{ns}/{name}")
        self.mark(self._pods("selector", {b.selector for b in bindings}))

    def on_exception(self, change: Change[AzurePodIdentityException]) -> None:
        self.mark(self._pods("namespace", [change.key[0]]))

    def on_assigned(self, change: Change[ObservedAssigned]) -> None:
        self.mark(o.pod_key for o in (change.old, change.new) if o is not None)

    # -- the cycle ------------------------------------------------------------------------------

    def due_retries(self) -> None:
        """Pods whose ARM update failed or was refused, once their wait is over."""
        now = self._clock()
        with self._lock:
            due = [k for k, at in self._retry_at.items() if at <= now]
            for key in due:
                del self._retry_at[key]
        if due:
            self.mark(due)

    def cycle(self) -> bool:
        """Recompute the dirty pods and act on the difference; whether anything was written."""
        with self._lock:
            keys, self._dirty = self._dirty, set()
        if not keys:
            return False
        self.stats.cycles += 1
        self.stats.pods_recomputed += len(keys)
        work: dict[Target | None, Work] = {}
        deferred: list[PodKey] = []
        for key in sorted(keys):
            if not self._plan_pod(key, work):
                deferred.append(key)
        if deferred:
            self.stats.deferred += len(deferred)
            # Their cache events re-mark them; this is the fallback for one that never comes.
            with self._lock:
                for key in deferred:
                    self._retry_at.setdefault(key, self._clock() + 1.0)
        jobs = {t: w for t, w in work.items() if w}
        log.info("cycle %d: %d pods recomputed, %d deferred, %d VMs/scale sets with work",
                 self.stats.cycles, len(keys), len(deferred), len(jobs))  # fmt: skip
        if not jobs:
            return False
        self.stats.targets_worked += len(jobs)
        futures = [self._arm_pool.submit(self._apply, t, w) for t, w in jobs.items()]
        for future in futures:
            error = future.exception()
            if isinstance(error, NotActing):
                raise error
            if error is not None:
                self.stats.failures += 1
                log.error("applying a change failed: %s", type(error).__name__)
        return True

    # -- planning (one pod) ---------------------------------------------------------------------

    def _compute(self, key: PodKey) -> tuple[list[Want], list[Problem]]:
        pod: PodView | None = self.caches.pods.get(*key)
        if pod is None:
            return [], []
        node = self.caches.nodes.get("", pod.node) if pod.node else None
        bindings: list[AzureIdentityBinding] = self.caches.bindings.by("selector", pod.selector)
        identity_of: dict[tuple[str, str], AzureIdentity] = {}
        for b in bindings:
            found = self.caches.identities.get(b.meta.namespace, b.azure_identity)
            if found is not None:
                identity_of[(b.meta.namespace, b.azure_identity)] = found
        exceptions = self.caches.exceptions.by("namespace", pod.namespace)
        return wants_for(pod, node, bindings, identity_of, exceptions, self.namespaced)

    def _set_wants(self, key: PodKey, wants: list[Want]) -> None:
        old = self._wants.pop(key, {})
        for want in old.values():
            if want.target is not None:
                counter = self._in_use[want.target]
                counter[want.resource_id] -= 1
                if counter[want.resource_id] <= 0:
                    del counter[want.resource_id]
        if wants:
            self._wants[key] = {w.name: w for w in wants}
        for want in wants:
            if want.target is not None:
                self._in_use.setdefault(want.target, Counter())[want.resource_id] += 1

    def _caught_up(self, observed: Mapping[str, ObservedAssigned], names: Iterable[str],
                   namespace: str) -> bool:  # fmt: skip
        """Whether the cache shows our last write of each of these objects."""
        now = self._clock()
        with self._expect_lock:
            for name in names:
                expected = self._expect.get((namespace, name))
                if expected is None:
                    continue
                version, since = expected
                seen = observed.get(name)
                met = (seen is None) if version is None else (
                    seen is not None and seen.aai.meta.resource_version == version)  # fmt: skip
                if met or now - since > EXPECTATION_TTL:
                    del self._expect[(namespace, name)]
                else:
                    return False
        return True

    def _expect_version(self, key: tuple[str, str], version: str | None) -> None:
        with self._expect_lock:
            self._expect[key] = (version, self._clock())

    def _plan_pod(self, key: PodKey, work: dict[Target | None, Work]) -> bool:
        wants, problems = self._compute(key)
        for problem in problems:
            self._report(problem.binding, problem.reason, problem.message, WARNING)
        self._set_wants(key, wants)
        observed_all: list[ObservedAssigned] = self.caches.assigned.by("pod", f"{key[0]}/{key[1]}")
        by_ns: dict[str, dict[str, ObservedAssigned]] = {}
        for o in observed_all:
            by_ns.setdefault(o.aai.meta.namespace, {})[o.aai.meta.name] = o
        for namespace, observed in by_ns.items():
            if not self._caught_up(observed, observed, namespace):
                return False
        mine = by_ns.get(key[0], {})
        if not self._caught_up(mine, [w.name for w in wants], key[0]):
            return False
        wanted = {w.name for w in wants}
        for want in wants:
            seen = mine.get(want.name)
            if seen is None:
                work.setdefault(want.target, Work()).creates.append(want)
            elif seen.deleting or seen.aai.state == AssignedState.UNASSIGNED:
                self._plan_removal(seen, work)  # finish it; the pod is re-marked and recreated
            elif not want.matches(seen.aai):
                work.setdefault(want.target, Work()).updates.append((want, seen))
                old_target = self._target_of(seen)
                if (
                    seen.resource_id
                    and old_target is not None
                    and (old_target != want.target or seen.resource_id != want.resource_id)
                ):
                    work.setdefault(old_target, Work()).released.add(seen.resource_id)
            elif seen.aai.state == AssignedState.CREATED:
                work.setdefault(want.target, Work()).confirms.append((want, seen))
        for namespace, observed in by_ns.items():
            for name, seen in observed.items():
                if namespace != key[0] or name not in wanted:
                    self._plan_removal(seen, work)
        return True

    def _target_of(self, observed: ObservedAssigned) -> Target | None:
        if not observed.resource_id:
            return None
        node: NodeView | None = self.caches.nodes.get("", observed.aai.node_name)
        return node.target if node is not None else None

    def _plan_removal(self, observed: ObservedAssigned, work: dict[Target | None, Work]) -> None:
        work.setdefault(self._target_of(observed), Work()).removals.append(observed)

    # -- acting (one VM or scale set) -----------------------------------------------------------

    def _api(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Run API writes in parallel; each result is the value or the exception."""
        futures: list[Future[Any]] = [self._api_pool.submit(c) for c in calls]
        results: list[Any] = []
        for future in futures:
            error = future.exception()
            if isinstance(error, NotActing):
                raise error
            results.append(error if error is not None else future.result())
        return results

    def _apply(self, target: Target | None, work: Work) -> None:
        # 1. Record intent in the API first, so a successor finds it: Created, Unassigned.
        pending: list[Want] = []
        calls: list[Callable[[], Any]] = []
        for want in work.creates:
            calls.append(partial(self._write, want, None))
        for want, seen in work.updates:
            calls.append(partial(self._write, want, seen))
        for want, result in zip(
            [*work.creates, *(w for w, _ in work.updates)], self._api(calls), strict=True
        ):
            if isinstance(result, BaseException):
                self._write_failed(want.pod.key, result)
            else:
                pending.append(want)
        pending += [w for w, _ in work.confirms]
        removing = [o for o in work.removals if o.aai.state != AssignedState.UNASSIGNED]
        unassigned = self._api(
            [partial(self._set_state, o, AssignedState.UNASSIGNED) for o in removing]
        )
        failed_removals = {o.key for o, r in zip(removing, unassigned, strict=True)
                           if isinstance(r, BaseException)}  # fmt: skip
        removals = [o for o in work.removals if o.key not in failed_removals]

        # 2. ARM: one delta for this VM or scale set.
        attached: frozenset[str] = frozenset()
        stuck: set[str] = set()  # ids we had to detach but could not
        if target is not None:
            try:
                attached, stuck = self._update_arm(target, pending, removals, work.released)
            except ArmFailure as exc:
                log.warning("%s", exc)
                self._arm_failed(target, pending, removals, str(exc))
                return

        # 3. Record the outcome: Assigned, or gone.
        done = [w for w in pending if target is None or w.resource_id in attached]
        calls = []
        for want in done:
            calls.append(partial(self._assigned, want))
        gone = [o for o in removals if target is None or o.resource_id not in stuck]
        for o in gone:
            calls.append(partial(self._remove, o))
        for result in self._api(calls):
            if isinstance(result, BaseException):
                log.warning("writing an AzureAssignedIdentity failed: %s", _describe(result))
        where = str(target) if target is not None else "its pods (no ARM change needed)"
        for ns, name, uid, identity in sorted({
            (w.binding.meta.namespace, w.binding.meta.name, w.binding.meta.uid,
             w.identity.meta.name) for w in done
        }):  # fmt: skip
            self._report_ref(Ref(API_VERSION, "AzureIdentityBinding", ns, name, uid),
                             "IdentityAssigned", f"identity {identity} assigned to {where}",
                             NORMAL)  # fmt: skip

    def _write(self, want: Want, seen: ObservedAssigned | None) -> str:
        if seen is None:
            version = self.writer.create(want, AssignedState.CREATED)
        else:
            version = self.writer.replace(want, seen.aai.meta.resource_version,
                                          AssignedState.CREATED)  # fmt: skip
        self._expect_version((want.namespace, want.name), version)
        return version

    def _set_state(self, observed: ObservedAssigned, state: AssignedState) -> str:
        ns, name = observed.key
        version = self.writer.set_state(ns, name, state)
        self._expect_version(observed.key, version)
        return version

    def _assigned(self, want: Want) -> str:
        version = self.writer.set_state(want.namespace, want.name, AssignedState.ASSIGNED)
        self._expect_version((want.namespace, want.name), version)
        return version

    def _remove(self, observed: ObservedAssigned) -> None:
        ns, name = observed.key
        self.writer.remove(ns, name, observed.finalizers)
        self._expect_version(observed.key, None)

    def _write_failed(self, pod: PodKey, error: BaseException) -> None:
        if isinstance(error, ApiError) and error.status.code == 409:
            self.writer.stats.conflicts += 1
            self.mark([pod])  # someone else wrote it: recompute from the fresh cache
            return
        log.warning("writing an AzureAssignedIdentity for pod %s/%s failed: %s",
                    pod[0], pod[1], _describe(error))  # fmt: skip
        with self._lock:
            self._retry_at[pod] = self._clock() + FAILURE_RETRY

    def _arm_state(self, target: Target) -> Identities:
        with self._arm_lock:
            known = self._arm.get(target)
        if known is None:
            known = self.arm.get(target)
            with self._arm_lock:
                self._arm[target] = known
        return known

    def _update_arm(
        self, target: Target, pending: list[Want], removals: list[ObservedAssigned],
        released: set[str],
    ) -> tuple[frozenset[str], set[str]]:  # fmt: skip
        """Bring the target's identity block to what is needed; (attached ids, stuck ids)."""
        now = self._clock()
        in_use = self._in_use.get(target, Counter())
        candidates = {o.resource_id for o in removals if o.resource_id} | released
        detach = {c for c in candidates if in_use.get(c, 0) <= 0 and c not in self.immutable}
        wanted = {w.resource_id for w in pending}
        attach = {a for a in wanted if self._refused.get((target, a), 0.0) <= now}
        if not (attach or detach):
            return frozenset(), set()
        state = self._arm_state(target)
        if not (attach - state.user or detach & state.user):
            return state.user, set()
        state, refused = self.arm.update(target, state, attach, detach)
        with self._arm_lock:
            self._arm[target] = state
        for rid in refused:
            self._refused[(target, rid)] = now + self.refused_retry
        if refused:
            self._report_refused(target, pending, refused)
        return state.user, detach & state.user

    def _report_refused(self, target: Target, pending: list[Want], refused: set[str]) -> None:
        when = self._clock() + self.refused_retry
        for want in pending:
            if want.resource_id in refused:
                with self._lock:
                    self._retry_at[want.pod.key] = when
                self._report(want.binding, "IdentityRefused",
                    f"Azure Resource Manager refused to assign identity {want.identity.meta.name} "
                    f"({want.identity.resource_id}) to {target}: MIC's own identity needs the "
                    "Managed Identity Operator role on it. The binding's other identities were "
                    "assigned; this one is retried later", WARNING)  # fmt: skip

    def _arm_failed(self, target: Target, pending: list[Want], removals: list[ObservedAssigned],
                    message: str) -> None:  # fmt: skip
        with self._arm_lock:
            self._arm.pop(target, None)  # read it again next time
        retry = self._clock() + FAILURE_RETRY
        with self._lock:
            for want in pending:
                self._retry_at[want.pod.key] = retry
            for o in removals:
                self._retry_at[o.pod_key] = retry
        for want in pending:
            self._report(want.binding, "IdentityAssignFailed",
                         f"assigning identity {want.identity.meta.name} to {target} failed: "
                         f"{message}; retrying", WARNING)  # fmt: skip

    # -- periodic ARM check ---------------------------------------------------------------------

    def verify(self) -> int:
        """Read every VM and scale set that should hold identities and put back what is
        missing (removed by hand); how many identities were put back."""
        restored = 0
        now = self._clock()
        targets = {t: {r for r, n in c.items() if n > 0} for t, c in list(self._in_use.items())}
        for target, wanted in sorted(targets.items()):
            if not wanted:
                continue
            try:
                state = self.arm.get(target)
                missing = {
                    m for m in wanted - state.user if self._refused.get((target, m), 0) <= now
                }
                if missing:
                    log.warning("%d identities missing from %s; putting them back",
                                len(missing), target)  # fmt: skip
                    state, _ = self.arm.update(target, state, missing, set())
                    restored += len(missing & state.user)
            except ArmFailure as exc:
                log.warning("%s", exc)
                continue
            with self._arm_lock:
                self._arm[target] = state
        return restored

    # -- events ---------------------------------------------------------------------------------

    def _report(self, binding: AzureIdentityBinding, reason: str, message: str, kind: str) -> None:
        meta: Meta = binding.meta
        ref = Ref(API_VERSION, "AzureIdentityBinding", meta.namespace, meta.name, meta.uid)
        self._report_ref(ref, reason, message, kind)

    def _report_ref(self, ref: Ref, reason: str, message: str, kind: str) -> None:
        """Once per (binding, reason, message) while remembered: a resync repeats nothing."""
        memo = (f"{ref.namespace}/{ref.name}", ref.uid, reason, message)
        with self._lock:
            if memo in self._reported:
                return
            self._reported[memo] = None
            while len(self._reported) > 10000:
                self._reported.popitem(last=False)
        log.log(logging.WARNING if kind == WARNING else logging.INFO,
                "binding %s/%s: %s: %s", ref.namespace, ref.name, reason, message)  # fmt: skip
        self.reporter.record(ref, reason, message, kind)


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return f"API {error.status.code} {error.status.reason}"
    return type(error).__name__
