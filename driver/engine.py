"""The volume use-cases both front doors call: publish, unpublish, restore.

Each reads as a list of steps over three parts: the `Resolver` (parse, credential, fetch, render;
no disk I/O), the `Placement` (tmpfs and the atomic swap) and the `Ledger` (records, rotation
credentials, per-volume exclusion). A failure leaves no mount and no files behind on a first
publish, and the old files on a republish. The engine knows nothing of gRPC or FlexVolume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from azcommon.errors import FailedPrecondition, Internal, InvalidArgument, KvError
from driver.contract import FileInfo, PublishRequest, PublishResult
from driver.keyvault.objects import Fetched, RenderedFile
from driver.keyvault.render import render
from driver.ledger import Ledger
from driver.metrics import Metrics
from driver.model import ObjectSpec
from driver.placement import Placement
from driver.resolve import Prepared, ResolvedVolume, Resolver
from driver.targets import check_target_path, check_volume_id
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

    def restore(self) -> list[str]:
        """Reload state and rebuild lost volumes, one after another. Returns the problems seen.
        (The daemon serves first and rebuilds in the background: `reload` + `recover_all`.)"""
        problems, lost = self.reload()
        return problems + self.recover_all(lost)

    def reload(self) -> tuple[list[str], list[VolumeRecord]]:
        """Load the records (fast, disk only): forget volumes whose target is gone, sweep crash
        leftovers from intact ones. Returns the problems seen and the volumes to rebuild."""
        problems = self._ledger.open()
        lost: list[VolumeRecord] = []
        for record in self._ledger.all():
            target = Path(record.target_path)
            if not target.exists():
                self.forget(record)
            elif not self.intact(record):
                lost.append(record)
            else:
                self._placement.sweep(target)  # a payload left by a crash mid-swap
        return problems, lost

    def recover_all(
        self, records: list[VolumeRecord], workers: ThreadPoolExecutor | None = None
    ) -> list[str]:
        """Rebuild lost volumes (concurrently on `workers`); returns the problems seen."""
        problems: list[str] = []
        self._metrics.restore_pending.set(len(records))

        def one(record: VolumeRecord) -> None:
            try:
                self.recover(record)
            except KvError as exc:
                problems.append(f"volume {record.volume_id}: not recovered yet: {exc}")
            except Exception as exc:  # one volume's surprise must not stop the others' restore
                log.error("volume %s: restore failed", record.volume_id, exc_info=True)
                problems.append(
                    f"volume {record.volume_id}: not recovered yet: {type(exc).__name__}"
                )
            finally:
                self._metrics.restore_pending.dec()

        if workers is None:
            for record in records:
                one(record)
        else:
            list(workers.map(one, records))
        return problems

    # -- asked for by rotation ------------------------------------------------------------------

    def intact(self, record: VolumeRecord) -> bool:
        return self._placement.intact(Path(record.target_path))

    def recover(self, record: VolumeRecord) -> None:
        """Re-mount and rewrite a recorded volume from Key Vault (its files were lost)."""
        target = Path(record.target_path)
        with self._ledger.exclusive(record.volume_id, target):
            self._ledger.require_current(record)
            why = self._placement.refusal(target, ours=True)
            if why is not None:
                raise InvalidArgument(f"target_path {target} {why}")
            resolved = self._resolver.refetch(record, self._ledger.auth_of(record))
            created = self._placement.place(target, resolved.files, record.spec.fs_group)
            record.versions = resolved.versions
            record.last_check = self._clock()
            self._save_or_undo(record, target, created)
            log.info("recovered volume %s at %s", record.volume_id, record.target_path)

    def apply_rotation(
        self,
        record: VolumeRecord,
        changed: dict[str, list[Fetched]],
        present: Sequence[ObjectSpec] | None = None,
    ) -> bool:
        """Swap in new versions of `changed` objects, keeping every other file as it is.

        `present` is the volume's concrete objects now (selections re-listed, missing optional
        objects left out); objects mounted before and not in it lose their files."""
        target = Path(record.target_path)
        with self._ledger.exclusive(record.volume_id, target):
            self._ledger.require_current(record)
            try:
                files, versions = carry_over(
                    record, changed, self._placement.current(target), present
                )
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
            for path in sorted(set(record.versions) - set(versions)):
                log.info("volume %s object %s is gone: its files removed", record.volume_id, path)
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
            and self.intact(existing)
            and self._clock() - existing.last_check < self._poll_interval
        )

    def _keeps_files(self, existing: VolumeRecord, prepared: Prepared, exc: KvError) -> bool:
        """A republish that cannot refresh a volume whose good files are in place keeps them
        and succeeds: kubelet gives up on a final error, and some versions then delete the
        mount directory. Not so for new credentials: those must prove themselves."""
        if not (
            existing.spec == prepared.spec
            and existing.identity_key == prepared.access.identity_key
            and self.intact(existing)
        ):
            return False
        self._metrics.republish_kept.labels(exc.code).inc()
        log.warning(
            "republish of volume %s could not refresh it, its current files are kept: %s",
            existing.volume_id,
            exc,
        )
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
    present: Sequence[ObjectSpec] | None = None,
) -> tuple[list[RenderedFile], dict[str, list[str]]]:
    """The full new payload: changed objects rendered anew, every other present object's files
    kept as they are, objects no longer present dropped."""
    if present is None:
        present = [o for o in record.spec.objects if not o.selects and o.path in record.versions]
    files: list[RenderedFile] = []
    versions: dict[str, list[str]] = {}
    for obj in present:
        if obj.path in changed:
            files.extend(render(obj, changed[obj.path]))
            versions[obj.path] = [v.version for v in changed[obj.path]]
            continue
        if obj.path not in record.versions:
            continue  # not mounted (a missing optional object) and still not there
        kept = {p: mv for p, mv in current.items() if _belongs(obj, p)}
        if not kept:
            raise FailedPrecondition(
                f"volume {record.volume_id}: current files of {obj.path!r} are missing"
            )
        files.extend(RenderedFile(p, mode, data) for p, (mode, data) in kept.items())
        versions[obj.path] = record.versions[obj.path]
    return files, versions


def _belongs(obj: ObjectSpec, path: str) -> bool:
    """Whether a current file is one of `obj`'s."""
    if obj.cert_parts:
        return path in {f"{obj.path}.{p.part.value}" for p in obj.cert_parts}
    return path == obj.path or path.startswith(obj.path + "/")


def _infos(files: tuple[RenderedFile, ...]) -> tuple[FileInfo, ...]:
    return tuple(FileInfo(f.path, len(f.data), f.mode) for f in files)


def _result(record: VolumeRecord, files: tuple[FileInfo, ...], *, fetched: bool) -> PublishResult:
    return PublishResult(
        record.volume_id, Path(record.target_path), files, dict(record.versions), fetched
    )
