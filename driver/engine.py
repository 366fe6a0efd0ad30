"""The volume use-cases both front doors call: publish and unpublish.

Each reads as a list of steps over three parts: the `Resolver` (parse, credential, fetch, render;
no disk I/O), the `Placement` (tmpfs and the atomic swap) and the `Ledger` (records, rotation
credentials, per-volume exclusion). A failure leaves no mount and no files behind on a first
publish, and the old files on a republish. The engine knows nothing of gRPC or FlexVolume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from azcommon.errors import InvalidArgument, KvError
from driver.contract import FileInfo, PublishRequest, PublishResult
from driver.keyvault.objects import RenderedFile
from driver.ledger import Ledger
from driver.metrics import Metrics
from driver.placement import Placement
from driver.resolve import Prepared, ResolvedVolume, Resolver
from driver.targets import check_target_path, check_volume_id
from driver.volumes import VolumeRecord

log = logging.getLogger(__name__)


class Engine:
    """Publish and unpublish volumes (restart recovery and rotation swaps: `driver.upkeep`)."""

    def __init__(
        self,
        *,
        resolver: Resolver,
        placement: Placement,
        ledger: Ledger,
        metrics: Metrics,
        poll_interval: float,
        clock: Callable[[], float] = time.time,
        on_kept: Callable[[VolumeRecord, KvError], None] | None = None,
    ) -> None:
        """`on_kept` hears of every republish that kept old files (an Event on the pod)."""
        self._resolver = resolver
        self._placement = placement
        self._ledger = ledger
        self._metrics = metrics
        self._poll_interval = poll_interval
        self._clock = clock
        self._on_kept = on_kept

    # -- front-door use-cases -------------------------------------------------------------------

    def publish(self, request: PublishRequest) -> PublishResult:
        check_volume_id(request.volume_id)
        target = check_target_path(request.target_path)
        with (
            self._measure("publish", request.source),
            self._ledger.exclusive(request.volume_id, target),
        ):
            existing = self._existing(request.volume_id, target)
            prepared = self._resolver.prepare(request)
            if existing is not None and self._fresh(existing, prepared):
                # kubelet republishes (requiresRepublish) to hand over fresh tokens: nothing to fetch.
                self._ledger.remember_auth(existing, prepared.auth)
                return _result(existing, self._placement.listing(target), fetched=False)
            try:
                self._placement.check_room(prepared.spec.file_paths())
                resolved = self._resolver.fetch(prepared)
            except KvError as exc:
                if existing is None or not self._keeps_files(existing, prepared, exc):
                    self._release_unused(prepared)
                    raise
                return _result(existing, self._placement.listing(target), fetched=False)
            record = self._record(request, target, resolved, existing)
            if existing is None:
                self._place_new(record, resolved, prepared)
            else:
                self._replace(existing, record, resolved, prepared)
            log.info(
                "published volume %s at %s: %d objects from vault %s",
                request.volume_id,
                target,
                len(resolved.spec.objects),
                resolved.spec.vault_name,
            )
            return _result(record, _infos(resolved.files), fetched=True)

    def unpublish(self, volume_id: str, target_path: Path) -> None:
        check_volume_id(volume_id)
        target = check_target_path(target_path)
        record = self._ledger.at(target)
        source = record.source if record else "unknown"
        with self._measure("unpublish", source), self._ledger.exclusive(volume_id, target):
            if record is None:
                # Nothing of ours is there: at most an empty directory is removed.
                self._placement.remove_if_empty(target)
                return
            self._placement.release(target)
            self._ledger.drop(record, self._resolver.release)
            log.info("unpublished volume %s at %s", record.volume_id, target)

    def ready(self) -> bool:
        return self._ledger.ready()

    # -- steps ----------------------------------------------------------------------------------

    def _existing(self, volume_id: str, target: Path) -> VolumeRecord | None:
        """Our record at the target, or None once the target is proven safe to mount at."""
        existing = self._ledger.at(target)
        if existing is None:
            why = self._placement.refusal(target)
            if why is not None:
                raise InvalidArgument(f"target_path {target} {why}")
        elif existing.volume_id != volume_id:
            raise InvalidArgument(
                f"target_path {target} already holds volume {existing.volume_id};"
                " unpublish it first"
            )
        return existing

    def _fresh(self, existing: VolumeRecord, prepared: Prepared) -> bool:
        """A republish of the same volume, as the same identity (same secret, if any), checked
        within the poll interval needs no fetch."""
        return (
            existing.spec == prepared.spec
            and existing.identity_key == prepared.access.identity_key
            and self._placement.intact(Path(existing.target_path))
            and self._clock() - existing.last_check < self._poll_interval
        )

    def _keeps_files(self, existing: VolumeRecord, prepared: Prepared, exc: KvError) -> bool:
        """A republish that cannot refresh a volume whose good files are in place keeps them
        and succeeds: kubelet gives up on a final error, and some versions then delete the
        mount directory. Not so for new credentials: those must prove themselves."""
        if not (
            existing.spec == prepared.spec
            and existing.identity_key == prepared.access.identity_key
            and self._placement.intact(Path(existing.target_path))
        ):
            return False
        self._metrics.republish_kept.labels(exc.code).inc()
        log.warning(
            "republish of volume %s could not refresh it, its current files are kept: %s",
            existing.volume_id,
            exc,
        )
        if self._on_kept is not None:
            try:
                self._on_kept(existing, exc)
            except Exception:  # reporting is best effort; the answer stays OK
                log.warning("reporting the kept files of %s failed", existing.volume_id)
        return True

    def _record(
        self,
        request: PublishRequest,
        target: Path,
        resolved: ResolvedVolume,
        existing: VolumeRecord | None,
    ) -> VolumeRecord:
        now = self._clock()
        return VolumeRecord(
            volume_id=request.volume_id,
            target_path=str(target),
            source=request.source,
            spec=resolved.spec,
            identity_key=resolved.identity_key,
            versions=resolved.versions,
            published_at=existing.published_at if existing else now,
            last_check=now,
        )

    def _place_new(self, record: VolumeRecord, resolved: ResolvedVolume, prep: Prepared) -> None:
        """Record first, then mount: a crash in between leaves a record that restore rebuilds
        or forgets, never a mount nobody knows about."""
        self._ledger.save(record)
        try:
            self._placement.place(Path(record.target_path), resolved.files, record.spec.fs_group)
        except BaseException:
            self._ledger.drop(record, self._resolver.release)
            raise
        self._ledger.remember_auth(record, prep.auth)

    def _replace(
        self, old: VolumeRecord, record: VolumeRecord, resolved: ResolvedVolume, prep: Prepared
    ) -> None:
        """A republish that changed something: swap the files, then the record."""
        try:
            self._placement.place(Path(record.target_path), resolved.files, record.spec.fs_group)
            self._ledger.save(record)
        except BaseException:
            self._release_unused(prep)
            raise
        old_auth = self._ledger.auth_of(old)
        self._ledger.remember_auth(record, prep.auth)
        if old.identity_key != record.identity_key and not self._ledger.identity_in_use(
            old.identity_key
        ):
            # New credentials replaced the old ones: free what only the old ones used.
            self._resolver.release(old.spec, old_auth, old.identity_key)

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


def _infos(files: tuple[RenderedFile, ...]) -> tuple[FileInfo, ...]:
    return tuple(FileInfo(f.path, len(f.data), f.mode) for f in files)


def _result(record: VolumeRecord, files: tuple[FileInfo, ...], *, fetched: bool) -> PublishResult:
    return PublishResult(
        record.volume_id, Path(record.target_path), files, dict(record.versions), fetched
    )
