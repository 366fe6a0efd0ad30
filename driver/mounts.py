"""Where a volume's files live: a private tmpfs per volume, or a plain directory.

The tmpfs is mounted with mount(2) through libc (no helper binaries on the node image needed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

from azcommon.errors import Internal

log = logging.getLogger(__name__)

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MNT_DETACH = 0x2


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_points() -> dict[str, str]:
    """Mount point -> filesystem type, from this process's mount namespace."""
    points: dict[str, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and right:
                points[_unescape(fields[4])] = right.split()[0]
    return points


class Mounter(Protocol):
    mode: str
    capacity: int | None  # bytes a volume may hold, None when unbounded

    def is_mounted(self, target: Path) -> bool: ...

    def prepare(self, target: Path) -> bool:
        """Make `target` ready for files. True when this call created the mount/directory."""
        ...

    def release(self, target: Path) -> None:
        """Unmount our tmpfs at exactly `target` and remove the directory if that leaves it
        empty. Idempotent; a missing target is fine; a symbolic link is never followed."""
        ...


class DirMounter:
    """Plain directories, for unprivileged runs (files are then on the node's disk)."""

    mode = "dir"
    capacity: int | None = None

    def is_mounted(self, target: Path) -> bool:
        return target.is_dir()

    def prepare(self, target: Path) -> bool:
        if target.is_dir() and any(target.iterdir()):
            return False
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        return True

    def release(self, target: Path) -> None:
        if target.is_symlink() or not target.is_dir():
            return
        remove_payload(target)
        remove_if_empty(target)


class TmpfsMounter:
    mode = "tmpfs"

    def __init__(self, size: str = "4m") -> None:
        self.size = size
        self.capacity = size_in_bytes(size)
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def is_mounted(self, target: Path) -> bool:
        return not target.is_symlink() and resolved(target) in mount_points()

    def prepare(self, target: Path) -> bool:
        if self.is_mounted(target):
            return False
        target.mkdir(mode=0o750, parents=True, exist_ok=True)
        if target.is_symlink():
            raise Internal(f"{target} became a symbolic link: not mounting through it")
        options = f"size={self.size},mode=0755".encode()
        rc = self._libc.mount(
            b"tmpfs",
            os.fsencode(resolved(target)),
            b"tmpfs",
            ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC),
            ctypes.c_char_p(options),
        )
        if rc != 0:
            err = ctypes.get_errno()
            raise Internal(f"mounting tmpfs at {target}: {os.strerror(err)}")
        return True

    def release(self, target: Path) -> None:
        if target.is_symlink() or not target.is_dir():
            return  # never through a link: the mount would be somewhere else
        path = os.fsencode(resolved(target))
        while self.is_mounted(target):
            if self._libc.umount2(path, 0) != 0:
                err = ctypes.get_errno()
                if err == errno.EBUSY:
                    # A reader still holds it open: detach now, the kernel frees it later.
                    if self._libc.umount2(path, MNT_DETACH) == 0:
                        continue
                    err = ctypes.get_errno()
                if err in (errno.EINVAL, errno.ENOENT):
                    break
                raise Internal(f"unmounting {target}: {os.strerror(err)}")
        remove_if_empty(target)


def resolved(target: Path) -> str:
    """`target` with its parent's links resolved (as mountinfo shows it); the last component
    itself is never resolved: a link there is refused, not followed."""
    return os.path.join(os.path.realpath(target.parent), target.name)


def remove_payload(target: Path) -> None:
    """Remove what the atomic writer puts in a volume directory, and nothing else: the
    `..`-prefixed payloads and links, and top-level links into `..data`."""
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            if entry.is_symlink():
                entry.unlink()
            elif entry.is_dir():
                shutil.rmtree(entry)
        elif entry.is_symlink() and os.readlink(entry).startswith("..data/"):
            entry.unlink()


def remove_if_empty(target: Path) -> None:
    """rmdir: a directory holding anything the driver did not create stays where it is."""
    try:
        target.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EBUSY):
            raise Internal(f"removing {target}: {exc.strerror}") from None
        log.warning("left %s in place: %s (not created by this driver)", target, exc.strerror)


def size_in_bytes(size: str) -> int | None:
    """tmpfs's `size=` option ("4m", "512k", "1g", "65536") in bytes; None for a percentage."""
    text = size.strip().lower()
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    return int(number) * scale if number.isdigit() else None


def private_mount_namespace() -> bool:
    """True when we are root in a mount namespace of our own (e.g. under `unshare -m`), where
    tmpfs mounts cannot leak to the host: what the tests and the demo need to mount for real.

    Judged against our ancestors (pid 1's namespace is not always readable in a sandbox)."""
    if os.geteuid() != 0:
        return False
    try:
        own = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False
    pid = os.getppid()
    while pid > 1:
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") != own:
                return True
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                pid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def make_mounter(mode: str, tmpfs_size: str) -> Mounter:
    return TmpfsMounter(tmpfs_size) if mode == "tmpfs" else DirMounter()
