"""The volume use-cases both front doors call: publish, unpublish, restore.

Each reads as a list of steps over three parts: the `Resolver` (parse, credential, fetch, render;
no disk I/O), the `Placement` (tmpfs and the atomic swap) and the `Ledger` (records, rotation
credentials, per-volume exclusion). A failure leaves no mount and no files behind on a first
publish, and the old files on a republish. The engine knows nothing of gRPC or FlexVolume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from driver.contract import FileInfo, PublishRequest, PublishResult
from driver.errors import FailedPrecondition, Internal, KvError
from driver.keyvault.objects import Fetched, RenderedFile
from driver.keyvault.render import render
from driver.ledger import Ledger
from driver.metrics import Metrics
from driver.placement import Placement
from driver.resolve import Prepared, ResolvedVolume, Resolver
from driver.volumes import VolumeRecord

log = logging.getLogger(__name__)


class Engine:
    """Publish, unpublish and restore volumes; swap or rebuild them when rotation asks."""

    def __init__(
        self,
        *,
        resolver: Resolver,
        placement: Placement,
        ledger: Ledger,
        metrics: Metrics,
        poll_interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resolver = resolver
        self._placement = placement
        self._ledger = ledger
        self._metrics = metrics
        self._poll_interval = poll_interval
        self._clock = clock

    # -- front-door use-cases -------------------------------------------------------------------

    def publish(self, request: PublishRequest) -> PublishResult:
        with self._measure("publish", request.source), self._ledger.exclusive(request.volume_id):
            prepared = self._resolver.prepare(request)
            existing = self._ledger.get(request.volume_id)
            if existing is not None and self._fresh(existing, prepared, request.target_path):
                # kubelet republishes (requiresRepublish) to hand over fresh tokens: nothing to fetch.
                self._ledger.remember_auth(request.volume_id, prepared.auth)
                listing = self._placement.listing(request.target_path)
                return _result(existing, listing, fetched=False)
            try:
                resolved = self._resolver.fetch(prepared)
                record = self._place(request, resolved, existing)
            except BaseException:
                if existing is None:
                    # Nothing of this identity may stay cached for a volume that never mounted.
                    self._release_unused(prepared)
                raise
            self._ledger.remember_auth(request.volume_id, prepared.auth)
            log.info(
                "published volume %s at %s: %d objects from vault %s",
                request.volume_id,
                request.target_path,
                len(resolved.spec.objects),
                resolved.spec.vault_name,
            )
            return _result(record, _infos(resolved.files), fetched=True)

    def unpublish(self, volume_id: str, target_path: Path) -> None:
        record = self._ledger.find(volume_id, target_path)
        source = record.source if record else "unknown"
        with self._measure("unpublish", source), self._ledger.exclusive(volume_id):
            self._placement.release(target_path)
            if record is not None:
                self._ledger.drop(record, self._resolver.release)
                log.info("unpublished volume %s at %s", record.volume_id, target_path)
            self._ledger.forget_auth(volume_id)

    def ready(self) -> bool:
        return self._ledger.ready()

    def restore(self) -> list[str]:
        """Reload state after a (re)start; rebuild lost volumes. Returns the problems seen."""
        problems = self._ledger.open()
        for record in self._ledger.all():
            target = Path(record.target_path)
            if not target.exists():
                self.forget(record)
            elif not self.intact(record):
                try:
                    self.recover(record)
                except KvError as exc:
                    problems.append(f"volume {record.volume_id}: not recovered yet: {exc}")
            else:
                self._placement.sweep(target)  # a payload left by a crash mid-swap
        return problems

    # -- asked for by rotation ------------------------------------------------------------------

    def intact(self, record: VolumeRecord) -> bool:
        return self._placement.intact(Path(record.target_path))

    def recover(self, record: VolumeRecord) -> None:
        """Re-mount and rewrite a recorded volume from Key Vault (its files were lost)."""
        with self._ledger.exclusive(record.volume_id):
            self._ledger.require_current(record)
            resolved = self._resolver.refetch(record, self._ledger.auth_of(record.volume_id))
            target = Path(record.target_path)
            created = self._placement.place(target, resolved.files)
            record.versions = resolved.versions
            record.last_check = self._clock()
            self._save_or_undo(record, target, created)
            log.info("recovered volume %s at %s", record.volume_id, record.target_path)

    def apply_rotation(self, record: VolumeRecord, changed: dict[str, list[Fetched]]) -> bool:
        """Swap in new versions of `changed` objects, keeping every other file as it is."""
        with self._ledger.exclusive(record.volume_id):
            self._ledger.require_current(record)
            target = Path(record.target_path)
            try:
                files, versions = carry_over(record, changed, self._placement.current(target))
            except OSError as exc:
                raise Internal(f"reading the current files under {target}: {exc}") from None
            swapped = self._placement.swap(target, files)
            for path in changed:
                log.info(
                    "rotated volume %s object %s: %s -> %s",
                    record.volume_id,
                    path,
                    ",".join(record.versions.get(path, [])) or "-",
                    ",".join(versions[path]),
                )
            record.versions = versions
            record.last_check = self._clock()
            self._ledger.save(record)
            if swapped:
                self._metrics.rotations.inc()
            return swapped

    def forget(self, record: VolumeRecord, reason: str = "its target no longer exists") -> None:
        """Stop managing a volume (its files, if any, stay where they are)."""
        self._ledger.drop(record, self._resolver.release)
        log.info("forgot volume %s at %s: %s", record.volume_id, record.target_path, reason)

    # -- steps ----------------------------------------------------------------------------------

    def _fresh(self, existing: VolumeRecord, prepared: Prepared, target: Path) -> bool:
        """A republish of the same volume checked within the poll interval needs no fetch."""
        return (
            existing.spec == prepared.spec
            and existing.target_path == str(target)
            and self.intact(existing)
            and self._clock() - existing.last_check < self._poll_interval
        )

    def _place(
        self, request: PublishRequest, resolved: ResolvedVolume, existing: VolumeRecord | None
    ) -> VolumeRecord:
        now = self._clock()
        record = VolumeRecord(
            volume_id=request.volume_id,
            target_path=str(request.target_path),
            source=request.source,
            spec=resolved.spec,
            identity_key=resolved.identity_key,
            versions=resolved.versions,
            published_at=existing.published_at if existing else now,
            last_check=now,
        )
        created = self._placement.place(request.target_path, resolved.files)
        self._save_or_undo(record, request.target_path, created)
        return record

    def _save_or_undo(self, record: VolumeRecord, target: Path, created: bool) -> None:
        try:
            self._ledger.save(record)
        except BaseException:
            if created:
                self._placement.undo(target)
            raise

    def _release_unused(self, prepared: Prepared) -> None:
        key = prepared.access.identity_key
        if not self._ledger.identity_in_use(key):
            self._resolver.release(prepared.spec, prepared.auth, key)

    @contextmanager
    def _measure(self, operation: str, source: str) -> Iterator[None]:
        t0 = time.perf_counter()
        result = "success"
        try:
            yield
        except KvError as exc:
            result = exc.code
            raise
        except BaseException:
            result = "INTERNAL"
            raise
        finally:
            self._metrics.operations.labels(operation, source, result).inc()
            self._metrics.operation_seconds.labels(operation, source, result).observe(
                time.perf_counter() - t0
            )


def carry_over(
    record: VolumeRecord,
    changed: dict[str, list[Fetched]],
    current: Mapping[str, tuple[int, bytes]],
) -> tuple[list[RenderedFile], dict[str, list[str]]]:
    """The full new payload: changed objects rendered anew, every other file kept as it is."""
    files: list[RenderedFile] = []
    versions = dict(record.versions)
    for obj in record.spec.objects:
        if obj.path in changed:
            files.extend(render(obj, changed[obj.path]))
            versions[obj.path] = [v.version for v in changed[obj.path]]
            continue
        prefix = obj.path + "/"
        kept = {p: mv for p, mv in current.items() if p == obj.path or p.startswith(prefix)}
        if not kept:
            raise FailedPrecondition(
                f"volume {record.volume_id}: current files of {obj.path!r} are missing"
            )
        files.extend(RenderedFile(p, mode, data) for p, (mode, data) in kept.items())
    return files, versions


def _infos(files: tuple[RenderedFile, ...]) -> tuple[FileInfo, ...]:
    return tuple(FileInfo(f.path, len(f.data), f.mode) for f in files)


def _result(record: VolumeRecord, files: tuple[FileInfo, ...], *, fetched: bool) -> PublishResult:
    return PublishResult(
        record.volume_id, Path(record.target_path), files, dict(record.versions), fetched
    )
