"""Keeping mounted files current.

Each cycle:

1. lists each vault once per (vault, object type, selector, identity) for the selecting entries
   (`app-*`, tags) of every volume, however many volumes share the selection;
2. asks Key Vault for the latest version of every unpinned concrete object (named, or found by
   a listing) once per (vault, object type, object name, history depth, identity);
3. per volume, works out what it should hold now: objects whose versions moved are re-rendered,
   objects that appeared (new matches, optional objects created) are added, objects that went
   away (matches removed, optional objects deleted or disabled) lose their files; only volumes
   where something of that changed are swapped.

Files of unchanged objects are carried over from the current payload, so pinned objects are
never fetched again. Any failure of a volume's listings or checks keeps its old files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from azcommon.errors import Internal, KvError
from driver.keyvault.objects import Fetched
from driver.keyvault.types.selection import expand
from driver.ledger import Ledger
from driver.metrics import Metrics
from driver.model import ObjectSpec
from driver.resolve import Access, Resolver
from driver.upkeep import Upkeep
from driver.volumes import VolumeRecord

log = logging.getLogger(__name__)
K = TypeVar("K")
R = TypeVar("R")

# (vault url, object type, object name, history depth, principal, optional)
CheckKey = tuple[str, str, str, int, str, bool]
# (vault url, object type, selector signature, bound, principal)
ListKey = tuple[str, str, str, int, str]
Check = tuple[Access, ObjectSpec]  # what to ask for one key


@dataclass
class _Volume:
    """One intact volume in this cycle: how to reach its vaults, and as whom."""

    record: VolumeRecord
    access: Access
    principal: str


@dataclass
class CycleReport:
    """What one cycle did, for the log and the tests."""

    checks: int = 0  # version requests sent
    saved: int = 0  # version requests not sent thanks to sharing
    lists: int = 0  # vault listings sent (for selecting entries)
    lists_saved: int = 0  # listings not sent thanks to sharing
    rotated: list[str] = field(default_factory=list)  # volume ids swapped
    failures: dict[str, str] = field(default_factory=dict)  # volume id -> reason
    removed: list[str] = field(default_factory=list)  # volumes whose pod is gone


class Rotator:
    """The polling loop: one cycle every `interval` seconds on its own thread."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        resolver: Resolver,
        upkeep: Upkeep,
        metrics: Metrics,
        executor: Executor,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.resolver = resolver
        self.upkeep = upkeep
        self.metrics = metrics
        self.executor = executor
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="kv-rotation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                report = self.cycle()
            except Exception:  # the loop must survive anything; the cause is logged
                log.exception("rotation cycle failed")
                continue
            if report.rotated or report.failures or report.removed:
                log.info(
                    "rotation cycle: %d checks (%d saved), %d rotated, %d failed, %d removed",
                    report.checks,
                    report.saved,
                    len(report.rotated),
                    len(report.failures),
                    len(report.removed),
                )

    # -- one cycle ------------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        report = CycleReport()
        volumes = self._plan(report)
        listed = self._list(volumes, report)
        present = self._expand(volumes, listed, report)
        latest = self._check(volumes, present, report)
        self._apply(volumes, present, latest, report)
        now = self.clock()
        for volume in volumes:
            if volume.record.volume_id not in report.failures:
                volume.record.last_check = now  # memory only: a restart just checks once more
        return report

    def _plan(self, report: CycleReport) -> list[_Volume]:
        """Every intact volume and its access (lost ones rebuilt, gone ones forgotten)."""
        volumes: list[_Volume] = []
        for record in self.ledger.all():
            if not Path(record.target_path).exists():
                # The pod (and kubelet's directory for it) is gone: forget the volume.
                self.upkeep.forget(record)
                report.removed.append(record.volume_id)
                continue
            if not self.upkeep.intact(record):
                # The pod is there but its files are not (tmpfs lost): rebuild from Key Vault.
                try:
                    self.upkeep.recover(record)
                    report.rotated.append(record.volume_id)
                except Exception as exc:  # stays in this volume: the cycle goes on
                    self._fail(report, record, "recover", unexpected(exc))
                continue
            try:
                access, principal = self.resolver.access_recorded(
                    record, self.ledger.auth_of(record)
                )
            except KvError as exc:
                self._fail(report, record, "credentials", exc)
                continue
            volumes.append(_Volume(record, access, principal))
        return volumes

    def _list(
        self, volumes: list[_Volume], report: CycleReport
    ) -> dict[ListKey, list[str] | KvError]:
        """One listing per (vault, type, selector, identity), concurrently."""
        jobs: dict[ListKey, Check] = {}
        users = 0
        for volume in volumes:
            for entry in volume.record.spec.objects:
                if entry.select is not None:
                    users += 1
                    jobs.setdefault(_list_key(volume, entry), (volume.access, entry))
        results = gather(self.executor, self.resolver.listing, jobs)
        report.lists = len(jobs)
        report.lists_saved = users - len(jobs)
        return results

    def _expand(
        self,
        volumes: list[_Volume],
        listed: dict[ListKey, list[str] | KvError],
        report: CycleReport,
    ) -> dict[str, list[ObjectSpec]]:
        """Each volume's concrete objects now (volumes whose listing failed are left out)."""
        present: dict[str, list[ObjectSpec]] = {}
        for volume in volumes:
            objects: list[ObjectSpec] = []
            for entry in volume.record.spec.objects:
                if entry.select is None:
                    objects.append(entry)
                    continue
                names = listed[_list_key(volume, entry)]
                if isinstance(names, KvError):
                    self._fail(report, volume.record, "list", names)
                    break
                objects.extend(expand(entry, names))
            else:
                present[volume.record.volume_id] = objects
        return present

    def _check(
        self,
        volumes: list[_Volume],
        present: dict[str, list[ObjectSpec]],
        report: CycleReport,
    ) -> dict[CheckKey, list[Fetched] | KvError]:
        """One request per (vault, object, identity) over every volume, concurrently."""
        jobs: dict[CheckKey, Check] = {}
        users = 0
        for volume in volumes:
            for obj in present.get(volume.record.volume_id, ()):
                if obj.pinned:
                    continue  # pinned versions never change: never polled
                users += 1
                jobs.setdefault(_check_key(volume, obj), (volume.access, obj))
        results = gather(self.executor, self.resolver.latest, jobs)
        for result in results.values():
            code = result.code if isinstance(result, KvError) else "ok"
            self.metrics.rotation_checks.labels(code).inc()
        report.checks = len(jobs)
        report.saved = users - len(jobs)
        self.metrics.rotation_saved.inc(report.saved)
        return results

    def _apply(
        self,
        volumes: list[_Volume],
        present: dict[str, list[ObjectSpec]],
        latest: dict[CheckKey, list[Fetched] | KvError],
        report: CycleReport,
    ) -> None:
        """Per volume: what moved, appeared or went; swap only volumes whose every check
        succeeded and where something did."""
        for volume in volumes:
            record = volume.record
            objects = present.get(record.volume_id)
            if objects is None:
                continue  # its listing failed: already reported
            outcome = _compare(volume, objects, latest)
            if isinstance(outcome, KvError):
                self._fail(report, record, "check", outcome)
                continue  # a partial view of a volume is never swapped in
            changed, now_present = outcome
            gone = set(record.versions) - {obj.path for obj in now_present}
            if not changed and not gone:
                continue
            try:
                if self.upkeep.apply_rotation(record, changed, now_present):
                    report.rotated.append(record.volume_id)
            except Exception as exc:  # stays in this volume: the cycle goes on
                self._fail(report, record, "swap", unexpected(exc))

    def _fail(self, report: CycleReport, record: VolumeRecord, stage: str, exc: KvError) -> None:
        if record.volume_id in report.failures:
            return
        reason = f"{stage}:{exc.code}"
        report.failures[record.volume_id] = reason
        self.metrics.rotation_failures.labels(reason).inc()
        log.warning(
            "rotation of volume %s failed (%s), old files kept: %s", record.volume_id, reason, exc
        )


def gather(
    executor: Executor, fn: Callable[[Access, ObjectSpec], R], jobs: dict[K, Check]
) -> dict[K, R | KvError]:
    """Run every job on the executor; each key gets its result or its KvError."""
    futures = {key: executor.submit(fn, *job) for key, job in jobs.items()}
    results: dict[K, R | KvError] = {}
    for key, fut in futures.items():
        try:
            results[key] = fut.result()
        except KvError as exc:
            results[key] = exc
    return results


def _compare(
    volume: _Volume,
    objects: list[ObjectSpec],
    latest: dict[CheckKey, list[Fetched] | KvError],
) -> tuple[dict[str, list[Fetched]], list[ObjectSpec]] | KvError:
    """What of one volume moved (path -> latest versions) and what is present now, or the
    first failed check (then nothing of the volume may be swapped)."""
    record = volume.record
    changed: dict[str, list[Fetched]] = {}
    now_present: list[ObjectSpec] = []
    for obj in objects:
        if obj.pinned:
            if obj.path in record.versions:
                now_present.append(obj)
            continue
        result = latest[_check_key(volume, obj)]
        if isinstance(result, KvError):
            return result
        if not result:
            continue  # optional (or selected) and missing now
        now_present.append(obj)
        if [v.version for v in result] != record.versions.get(obj.path):
            changed[obj.path] = result
    return changed, now_present


def _check_key(volume: _Volume, obj: ObjectSpec) -> CheckKey:
    return (
        volume.access.vault_of(obj).url,
        obj.type.value,
        obj.name,
        obj.version_history,
        volume.principal,
        obj.optional,
    )


def _list_key(volume: _Volume, entry: ObjectSpec) -> ListKey:
    assert entry.select is not None
    return (
        volume.access.vault_of(entry).url,
        entry.type.value,
        entry.select.signature,
        entry.select.max_matches,
        volume.principal,
    )


def unexpected(exc: Exception) -> KvError:
    """A KvError as it is; anything else as INTERNAL, by type only (its text may hold content)."""
    if isinstance(exc, KvError):
        return exc
    log.error("rotation: unexpected %s", type(exc).__name__, exc_info=exc)
    return Internal(f"unexpected {type(exc).__name__}")
