"""Where a volume's files live: its own tmpfs (or directory) and the atomic `..data` swap.

The engine hands this rendered files; it mounts, writes, swaps and reads back. It knows nothing
of Key Vault, identities or records.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from azcommon.errors import InvalidArgument
from driver.contract import FileInfo
from driver.files import DATA_LINK, AtomicWriter, current_payload
from driver.keyvault.objects import RenderedFile
from driver.mounts import Mounter, remove_if_empty
from driver.targets import describe_foreign

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# A symbolic link this long or longer takes a page of its own on tmpfs (shorter ones are inline).
_LONG_LINK = 128


def pages_needed(files: Iterable[tuple[str, int]]) -> int:
    """Pages one payload takes on tmpfs, counted generously: every file at least one page (an
    empty file takes none, but a version may grow), every directory one page (the payload's
    own included), and each top-level link too long to be stored inline."""
    pages = 1  # the payload directory
    dirs: set[str] = set()
    tops: set[str] = set()
    for path, size in files:
        pages += max(1, math.ceil(size / PAGE))
        parts = path.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        tops.add(parts[0])
    links = sum(1 for name in tops if len(f"..data/{name}".encode()) >= _LONG_LINK)
    return pages + len(dirs) + links


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

    def place(self, target: Path, files: Sequence[RenderedFile], group: int | None = None) -> bool:
        """Mount (when needed) and write; a failure undoes a mount this call made.
        Returns whether this call made the mount. `group`: the pod's fsGroup, which owns the
        volume's directories and files, now and after every rotation."""
        self._check_fits(files)
        created = self._mounter.prepare(target)
        try:
            if group is not None:
                self._writer.own(target, group)
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

    def check_room(self, paths: Sequence[str]) -> None:
        """Before anything is fetched: could files at these paths fit at all (each at least a
        page)? A volume that cannot is refused without a single Key Vault request."""
        self._check_pages(pages_needed((p, 0) for p in paths), "at least ")

    def _check_fits(self, files: Sequence[RenderedFile]) -> None:
        self._check_pages(pages_needed((f.path, len(f.data)) for f in files), "")

    def _check_pages(self, pages: int, bound: str) -> None:
        """tmpfs counts pages, not bytes, and a swap holds the old and the new payload at once:
        a payload may take at most half the tmpfs's pages, or every rotation would fail."""
        capacity = self._mounter.capacity
        if capacity is None:
            return
        available = capacity // PAGE
        if 2 * pages > available:
            raise InvalidArgument(
                f"the volume's files need {bound}{pages} pages of {PAGE // 1024} KiB on its tmpfs"
                f" (every file and directory takes at least one), and a rotation needs twice"
                f" that; the tmpfs holds {available} pages (--tmpfs-size): mount fewer objects or"
                " versions, or raise --tmpfs-size"
            )
