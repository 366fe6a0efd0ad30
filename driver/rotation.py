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

from azure.core.credentials import TokenCredential

from driver.engine import Engine
from driver.errors import KvError
from driver.keyvault.fetch import VaultRef
from driver.keyvault.objects import Fetched
from driver.model import ObjectSpec
from driver.volumes import VolumeRecord

log = logging.getLogger(__name__)

# (vault url, object type, object name, history depth, principal)
CheckKey = tuple[str, str, str, int, str]


@dataclass
class CycleReport:
    checks: int = 0  # requests sent
    saved: int = 0  # requests not sent thanks to sharing
    rotated: list[str] = field(default_factory=list)  # volume ids swapped
    failures: dict[str, str] = field(default_factory=dict)  # volume id -> reason
    removed: list[str] = field(default_factory=list)  # volumes whose pod is gone


class Rotator:
    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
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
        engine = self.engine
        groups: dict[CheckKey, list[tuple[VolumeRecord, ObjectSpec]]] = defaultdict(list)
        access: dict[CheckKey, tuple[VaultRef, ObjectSpec, TokenCredential, str]] = {}
        checked: list[VolumeRecord] = []  # every intact volume, pinned-only ones included
        for record in engine.store.all():
            target = Path(record.target_path)
            if not target.exists():
                # The pod (and kubelet's directory for it) is gone: forget the volume.
                engine.forget(record)
                report.removed.append(record.volume_id)
                continue
            if not engine.intact(record):
                # The pod is there but its files are not (tmpfs lost): rebuild from Key Vault.
                try:
                    engine.recover(record)
                    report.rotated.append(record.volume_id)
                except KvError as exc:
                    self._fail(report, record, "recover", exc)
                continue
            try:
                vault, credential, principal = engine.access(record)
            except KvError as exc:
                self._fail(report, record, "credentials", exc)
                continue
            checked.append(record)
            for obj in record.spec.objects:
                if obj.pinned:
                    continue  # pinned versions never change: never polled
                key = (vault.url, obj.type.value, obj.name, obj.version_history, principal)
                groups[key].append((record, obj))
                access.setdefault(key, (vault, obj, credential, record.identity_key))

        futures = {key: self.executor.submit(engine.fetcher.fetch, *access[key]) for key in groups}
        latest: dict[CheckKey, list[Fetched]] = {}
        failed: dict[CheckKey, KvError] = {}
        for key, fut in futures.items():
            report.checks += 1
            report.saved += len(groups[key]) - 1
            try:
                latest[key] = fut.result()
                engine.metrics.rotation_checks.labels("ok").inc()
            except KvError as exc:
                failed[key] = exc
                engine.metrics.rotation_checks.labels(exc.code).inc()
        engine.metrics.rotation_saved.inc(report.saved)

        # Per volume: which objects moved, and did any check fail?
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
                if engine.apply_rotation(record, changed):
                    report.rotated.append(volume_id)
            except KvError as exc:
                self._fail(report, record, "swap", exc)
        now = self.clock()
        for record in checked:
            if record.volume_id not in report.failures:
                engine.touch(record, now)
        return report

    def _fail(self, report: CycleReport, record: VolumeRecord, stage: str, exc: KvError) -> None:
        if record.volume_id in report.failures:
            return
        reason = f"{stage}:{exc.code}"
        report.failures[record.volume_id] = reason
        self.engine.metrics.rotation_failures.labels(reason).inc()
        log.warning(
            "rotation of volume %s failed (%s), old files kept: %s", record.volume_id, reason, exc
        )
