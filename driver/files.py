"""Atomic volume contents, the way kubelet writes secret volumes.

Layout under the target directory:

    ..2026_11_23_10_00_00.123456789/   the current payload (real files)
    ..data -> ..2026_11_23_...         swapped with one rename(2): readers see old or new, never a mix
    secret1 -> ..data/secret1          one stable link per top-level name

A crash at any point leaves `..data` pointing at a complete payload; leftovers are swept next time.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from azcommon.errors import Internal
from driver.keyvault.objects import RenderedFile

DATA_LINK = "..data"
TMP_LINK = "..data_tmp"


def _payload_name() -> str:
    # kubelet's timestamped name, plus nanoseconds so two writes in one second never collide.
    now = time.time_ns()
    return time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime(now // 10**9)) + f".{now % 10**9:09d}"


def current_payload(target: Path) -> dict[str, tuple[int, bytes]]:
    """What readers see now: relative path -> (mode, bytes). Empty when nothing was written."""
    root = target / DATA_LINK
    if not root.is_dir():
        return {}
    out: dict[str, tuple[int, bytes]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = (
                full.stat().st_mode & 0o7777,
                full.read_bytes(),
            )
    return out


class AtomicWriter:
    def __init__(self, durable: bool = False) -> None:
        # On tmpfs there is nothing to flush; on a plain directory fsync keeps the swap crash-safe.
        self.durable = durable

    def write(self, target: Path, files: Sequence[RenderedFile]) -> bool:
        """Make `files` the volume's contents. Returns False when they already were (no swap)."""
        try:
            wanted = {f.path: (f.mode, f.data) for f in files}
            if wanted and current_payload(target) == wanted:
                return False
            payload = target / _payload_name()
            payload.mkdir(mode=0o755)
            swapped = False
            try:
                for f in files:
                    self._write_file(payload / f.path, f.mode, f.data)
                if self.durable:
                    _fsync_dir(payload)
                tmp = target / TMP_LINK
                tmp.unlink(missing_ok=True)
                os.symlink(payload.name, tmp)
                os.replace(tmp, target / DATA_LINK)
                swapped = True
                if self.durable:
                    _fsync_dir(target)
            except BaseException:
                # Whatever went wrong (an OSError, a bad name, an interrupt) before the swap, the
                # half-written payload must not stay inside a live volume.
                if not swapped:
                    shutil.rmtree(payload, ignore_errors=True)
                    (target / TMP_LINK).unlink(missing_ok=True)
                raise
            self._relink_top_level(target, {p.split("/", 1)[0] for p in wanted})
            self.sweep(target, keep=payload.name)
        except OSError as exc:
            # The old payload (if any) is still what `..data` points at: nothing half-visible.
            raise Internal(f"writing files under {target}: {exc.strerror or exc}") from None
        return True

    @staticmethod
    def own(target: Path, group: int) -> None:
        """Give `group` the volume: its root becomes set-group-ID, so every payload a later
        write (a rotation) creates inherits the group without another call; what is already
        there is given to the group now. Modes are kept: a file is group-readable when its mode
        says so (0644, 0440), as kubelet's own secret volumes are."""
        try:
            os.chown(target, -1, group, follow_symlinks=False)
            os.chmod(target, (os.stat(target).st_mode & 0o7777) | 0o2000)
            for dirpath, dirs, files in os.walk(target):
                for name in dirs + files:
                    path = os.path.join(dirpath, name)
                    os.chown(path, -1, group, follow_symlinks=False)
                for name in dirs:
                    path = os.path.join(dirpath, name)
                    if not os.path.islink(path):
                        os.chmod(path, (os.stat(path).st_mode & 0o7777) | 0o2000)
        except OSError as exc:
            raise Internal(
                f"giving the files under {target} to group {group}: {exc.strerror or exc}"
            ) from None

    @staticmethod
    def _write_file(path: Path, mode: int, data: bytes) -> None:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)  # the umask must not narrow the requested mode
        finally:
            os.close(fd)

    @staticmethod
    def _relink_top_level(target: Path, names: set[str]) -> None:
        for entry in target.iterdir():
            if not entry.name.startswith("..") and entry.is_symlink() and entry.name not in names:
                entry.unlink()
        for name in names:
            link = target / name
            if not link.is_symlink():
                os.symlink(f"{DATA_LINK}/{name}", link)

    @staticmethod
    def sweep(target: Path, keep: str | None = None) -> None:
        """Remove payload directories that `..data` does not point at (crash leftovers)."""
        if keep is None:
            try:
                keep = os.readlink(target / DATA_LINK)
            except OSError:
                keep = ""
        for entry in target.iterdir():
            if (
                entry.name.startswith("..")
                and entry.name not in (DATA_LINK, TMP_LINK, keep)
                and entry.is_dir()
                and not entry.is_symlink()
            ):
                shutil.rmtree(entry, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
