"""Keeping recorded volumes whole: reload and rebuild after a restart, and the swaps and
rebuilds the rotation loop asks for.

Like the engine, each operation is a list of steps over the `Resolver`, the `Placement` and the
`Ledger`, under the ledger's per-target exclusion; it never acts on a record that a publish or
unpublish has replaced since it was read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azcommon.errors import FailedPrecondition, Internal, InvalidArgument, KvError
from driver.keyvault.objects import Fetched, RenderedFile
from driver.keyvault.render import render
from driver.ledger import Ledger
from driver.metrics import Metrics
from driver.model import ObjectSpec
from driver.placement import Placement
from driver.resolve import Resolver
from driver.volumes import VolumeRecord

log = logging.getLogger(__name__)


class Upkeep:
    """Restore after a restart; rebuild lost volumes; swap in rotated objects; forget volumes."""

    def __init__(
        self,
        *,
        resolver: Resolver,
        placement: Placement,
        ledger: Ledger,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resolver = resolver
        self._placement = placement
        self._ledger = ledger
        self._metrics = metrics
        self._clock = clock

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

    def _save_or_undo(self, record: VolumeRecord, target: Path, created: bool) -> None:
        try:
            self._ledger.save(record)
        except BaseException:
            if created:
                self._placement.undo(target)
            raise


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
