"""Where a volume's files live: its own tmpfs (or directory) and the atomic `..data` swap.

The engine hands this rendered files; it mounts, writes, swaps and reads back. It knows nothing
of Key Vault, identities or records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from azcommon.errors import InvalidArgument
from driver.contract import FileInfo
from driver.files import DATA_LINK, AtomicWriter, current_payload
from driver.keyvault.objects import RenderedFile
from driver.mounts import Mounter, remove_if_empty
from driver.targets import describe_foreign


class Placement:
    """Mount, write, swap, read back and release the files of one volume at a time."""

    def __init__(self, mounter: Mounter, writer: AtomicWriter) -> None:
        self._mounter = mounter
        self._writer = writer

    def refusal(self, target: Path, *, ours: bool = False) -> str | None:
        """Why a volume must not be placed at `target`, or None. `ours`: the target is on
        record as ours (a rebuild), so our mount and our payload leftovers are expected there."""
        mounted = self._mounter.mode == "tmpfs" and self._mounter.is_mounted(target)
        if mounted:
            return None if ours else "already has a file system mounted that is not ours"
        return describe_foreign(target, payload_allowed=ours)

    def intact(self, target: Path) -> bool:
        """The volume's mount and its current payload are both there."""
        return self._mounter.is_mounted(target) and (target / DATA_LINK).is_dir()

    def place(self, target: Path, files: Sequence[RenderedFile]) -> bool:
        """Mount (when needed) and write; a failure undoes a mount this call made.
        Returns whether this call made the mount."""
        self._check_fits(files)
        created = self._mounter.prepare(target)
        try:
            self._writer.write(target, files)
        except BaseException:
            if created:
                self._mounter.release(target)
            raise
        return created

    def undo(self, target: Path) -> None:
        """Take a just-placed volume away again (its record could not be saved)."""
        self._mounter.release(target)

    def swap(self, target: Path, files: Sequence[RenderedFile]) -> bool:
        """Replace the files of a mounted volume; False when they were already these."""
        self._check_fits(files)
        return self._writer.write(target, files)

    def release(self, target: Path) -> None:
        """Unmount our tmpfs and remove our files and the directory they leave empty."""
        self._mounter.release(target)

    @staticmethod
    def remove_if_empty(target: Path) -> None:
        """For a target the driver holds no volume at: at most an empty directory goes."""
        if not target.is_symlink() and target.is_dir():
            remove_if_empty(target)

    def sweep(self, target: Path) -> None:
        """Remove a payload left behind by a crash mid-swap."""
        self._writer.sweep(target)

    def current(self, target: Path) -> Mapping[str, tuple[int, bytes]]:
        """What readers see now: relative path -> (mode, bytes)."""
        return current_payload(target)

    @staticmethod
    def listing(target: Path) -> tuple[FileInfo, ...]:
        """The files of the current payload, without reading them."""
        root = target / DATA_LINK
        return tuple(
            FileInfo(p.relative_to(root).as_posix(), st.st_size, st.st_mode & 0o7777)
            for p in sorted(root.rglob("*"))
            if p.is_file() and (st := p.stat())
        )

    def _check_fits(self, files: Sequence[RenderedFile]) -> None:
        """A swap holds the old and the new payload at once: half the tmpfs is the limit."""
        capacity = self._mounter.capacity
        size = sum(len(f.data) for f in files)
        if capacity is not None and 2 * size > capacity:
            raise InvalidArgument(
                f"the volume's files take {size} bytes; rotation needs twice that on its tmpfs,"
                f" which holds {capacity}: fewer objects or versions, or a larger --tmpfs-size"
            )
