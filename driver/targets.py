"""Checks on what names a volume on the node: its id and its target path.

Both come from kubelet, and (for FlexVolume) partly from the pod's own options, so they are
checked like any other input before anything is mounted, written or recorded: a bad one is an
INVALID_ARGUMENT naming the field, never an internal error from the file system.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from azcommon.errors import InvalidArgument

MAX_VOLUME_ID_BYTES = 1024  # generous: kubelet's ids are ~70 characters, ours ~60
PATH_MAX = 4096  # Linux limits, including the terminating NUL
NAME_MAX = 255


def check_volume_id(volume_id: str) -> str:
    if not volume_id:
        raise InvalidArgument("volume_id is empty")
    data = _encoded(volume_id, "volume_id")
    if len(data) > MAX_VOLUME_ID_BYTES:
        raise InvalidArgument(
            f"volume_id is {len(data)} bytes long; at most {MAX_VOLUME_ID_BYTES} are accepted"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in volume_id):
        raise InvalidArgument("volume_id contains control characters")
    return volume_id


def check_target_path(target: str | Path) -> Path:
    """The target as given, if it is an absolute, normalised path the kernel can take."""
    text = str(target)
    if not text:
        raise InvalidArgument("target_path is empty")
    data = _encoded(text, "target_path")
    if b"\0" in data:
        raise InvalidArgument("target_path contains a NUL byte")
    if not text.startswith("/"):
        raise InvalidArgument(f"target_path {text[:200]!r} is not an absolute path")
    if len(data) >= PATH_MAX:
        raise InvalidArgument(f"target_path is {len(data)} bytes long; the limit is {PATH_MAX - 1}")
    parts = text.split("/")[1:]
    if any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in (".", ".."):
        raise InvalidArgument(
            f"target_path {text[:200]!r} is not normalised (empty, '.' or '..' components)"
        )
    long = next((p for p in parts if len(p.encode()) > NAME_MAX), None)
    if long is not None:
        raise InvalidArgument(
            f"target_path has a component of {len(long.encode())} bytes; the limit is {NAME_MAX}"
        )
    return Path(text.rstrip("/") or "/")


def describe_foreign(target: Path, *, payload_allowed: bool = False) -> str | None:
    """Why the driver must not mount at `target`, or None.

    A symbolic link would put the mount wherever it points; a file is no mount point; a
    non-empty directory holds files we would hide and later delete. `payload_allowed`: the
    writer's own `..`-prefixed leftovers (a crash mid-write) do not count.
    """
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link; the driver never mounts through one"
    if not stat.S_ISDIR(st.st_mode):
        return "exists and is not a directory"
    try:
        with os.scandir(target) as entries:
            if any(not (payload_allowed and _written_by_us(e)) for e in entries):
                return "is a directory that is not empty; the driver would hide its files"
    except OSError as exc:
        return f"cannot be listed ({exc.strerror})"
    return None


def _written_by_us(entry: os.DirEntry[str]) -> bool:
    """The atomic writer's own entries: `..`-prefixed payloads and links into `..data`."""
    if entry.name.startswith(".."):
        return True
    return entry.is_symlink() and os.readlink(entry.path).startswith("..data/")


def _encoded(text: str, field: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{field} is not valid UTF-8 text") from None
