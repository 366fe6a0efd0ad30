"""The node's side of a test or benchmark: kubelet-shaped target paths and real mounts."""

from __future__ import annotations

import os
from pathlib import Path

from driver.mounts import TmpfsMounter, mount_points, private_mount_namespace


def default_mount_mode() -> str:
    """ "tmpfs" only where real mounts cannot leak to the host (a private mount namespace)."""
    return "tmpfs" if private_mount_namespace() else "dir"


def csi_target(root: Path, uid: str, name: str = "kv") -> Path:
    """kubelet's CSI mount path `<root>/pods/<uid>/volumes/kubernetes.io~csi/<name>/mount`.

    kubelet creates the parent; the driver creates the directory itself."""
    path = root / "pods" / uid / "volumes" / "kubernetes.io~csi" / name / "mount"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def flex_target(root: Path, uid: str, name: str = "kv", *, create: bool = False) -> Path:
    """kubelet's FlexVolume mount dir `<root>/pods/<uid>/volumes/azure~kv/<name>`.

    kubelet creates the dir itself before `mount` (`create=True`); the shim copes either way."""
    path = root / "pods" / uid / "volumes" / "azure~kv" / name
    if create:
        path.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def is_mounted(path: Path) -> bool:
    return os.path.realpath(path) in mount_points()


def release_mounts(root: Path) -> None:
    """Unmount whatever a crashed run left mounted under `root` (deepest first)."""
    prefix = str(root.resolve()) + "/"
    leftovers = sorted((p for p in mount_points() if p.startswith(prefix)), reverse=True)
    for point in leftovers:
        TmpfsMounter().release(Path(point))
