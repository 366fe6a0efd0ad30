"""Keeping mounted files current.

Each cycle asks Key Vault for the latest version of every unpinned object once per
(vault, object type, object name, history depth, identity), however many volumes share it, then
swaps only the volumes whose versions changed. Files of unchanged objects are carried over from
the current payload, so pinned objects are never fetched again. Any failure keeps the old files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from azcommon.errors import Internal, KvError
from driver.engine import Engine
from driver.keyvault.objects import Fetched
from driver.ledger import Ledger
from driver.metrics import Metrics
from driver.model import ObjectSpec
from driver.resolve import Access, Resolver
from driver.volumes import VolumeRecord

log = logging.getLogger(__name__)

# (vault url, object type, object name, history depth, principal)
CheckKey = tuple[str, str, str, int, str]
Check = tuple[Access, ObjectSpec]  # what to ask for one key
Groups = dict[CheckKey, list[tuple[VolumeRecord, ObjectSpec]]]


@dataclass
class CycleReport:
    """What one cycle did, for the log and the tests."""

    checks: int = 0  # requests sent
    saved: int = 0  # requests not sent thanks to sharing
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
        engine: Engine,
        metrics: Metrics,
        executor: Executor,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.resolver = resolver
        self.engine = engine
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
        groups, access, checked = self._plan(report)
        latest, failed = self._check(groups, access, report)
        self._apply(groups, latest, failed, report)
        now = self.clock()
        for record in checked:
            if record.volume_id not in report.failures:
                record.last_check = now  # memory only: a restart just checks once more
        return report

    def _plan(
        self, report: CycleReport
    ) -> tuple[Groups, dict[CheckKey, Check], list[VolumeRecord]]:
        """Group the unpinned objects of every intact volume by what Key Vault would be asked."""
        groups: Groups = defaultdict(list)
        access: dict[CheckKey, Check] = {}
        checked: list[VolumeRecord] = []  # every intact volume, pinned-only ones included
        for record in self.ledger.all():
            if not Path(record.target_path).exists():
                # The pod (and kubelet's directory for it) is gone: forget the volume.
                self.engine.forget(record)
                report.removed.append(record.volume_id)
                continue
            if not self.engine.intact(record):
                # The pod is there but its files are not (tmpfs lost): rebuild from Key Vault.
                try:
                    self.engine.recover(record)
                    report.rotated.append(record.volume_id)
                except Exception as exc:  # stays in this volume: the cycle goes on
                    self._fail(report, record, "recover", unexpected(exc))
                continue
            try:
                volume_access, principal = self.resolver.access_recorded(
                    record, self.ledger.auth_of(record)
                )
            except KvError as exc:
                self._fail(report, record, "credentials", exc)
                continue
            checked.append(record)
            for obj in record.spec.objects:
                if obj.pinned:
                    continue  # pinned versions never change: never polled
                key = (
                    volume_access.vault.url,
                    obj.type.value,
                    obj.name,
                    obj.version_history,
                    principal,
                )
                groups[key].append((record, obj))
                access.setdefault(key, (volume_access, obj))
        return groups, access, checked

    def _check(
        self, groups: Groups, access: dict[CheckKey, Check], report: CycleReport
    ) -> tuple[dict[CheckKey, list[Fetched]], dict[CheckKey, KvError]]:
        """One request per group, concurrently."""
        futures = {key: self.executor.submit(self.resolver.latest, *access[key]) for key in groups}
        latest: dict[CheckKey, list[Fetched]] = {}
        failed: dict[CheckKey, KvError] = {}
        for key, fut in futures.items():
            report.checks += 1
            report.saved += len(groups[key]) - 1
            try:
                latest[key] = fut.result()
                self.metrics.rotation_checks.labels("ok").inc()
            except KvError as exc:
                failed[key] = exc
                self.metrics.rotation_checks.labels(exc.code).inc()
        self.metrics.rotation_saved.inc(report.saved)
        return latest, failed

    def _apply(
        self,
        groups: Groups,
        latest: dict[CheckKey, list[Fetched]],
        failed: dict[CheckKey, KvError],
        report: CycleReport,
    ) -> None:
        """Per volume: which objects moved; swap only volumes whose every check succeeded."""
        updates: dict[str, dict[str, list[Fetched]]] = defaultdict(dict)
        records: dict[str, VolumeRecord] = {}
        for key, members in groups.items():
            for record, obj in members:
                records[record.volume_id] = record
                if key in failed:
                    self._fail(report, record, "check", failed[key])
                    continue
                fetched = latest[key]
                if [v.version for v in fetched] != record.versions.get(obj.path):
                    updates[record.volume_id][obj.path] = fetched
        for volume_id, changed in updates.items():
            if volume_id in report.failures:
                continue  # a partial view of a volume is never swapped in
            record = records[volume_id]
            try:
                if self.engine.apply_rotation(record, changed):
                    report.rotated.append(volume_id)
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


def unexpected(exc: Exception) -> KvError:
    """A KvError as it is; anything else as INTERNAL, by type only (its text may hold content)."""
    if isinstance(exc, KvError):
        return exc
    log.error("rotation: unexpected %s", type(exc).__name__, exc_info=exc)
    return Internal(f"unexpected {type(exc).__name__}")
