"""Taking a cluster apart so that nothing stays mounted, running or changed.

Order matters (measured on these machines): pod processes first (killed by PID from the
`kubepods` cgroups), then containerd's shims, then mounts deepest first (pod volumes, projected
tokens, kubelet's own bind mount of its root, container root filesystems and shm), then network
namespaces, the bridge, the cgroups, and last the host settings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from devstack.cluster.host import CGROUP_ROOT, HUGETLB, HostSnapshot
from devstack.cluster.process import _cmdline


def _unescape(field: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix`, deepest (and most recent) first."""
    found = []
    prefix = prefix.rstrip("/")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    found.reverse()  # later mounts first, so stacked mounts come off top-down
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_under(prefix: str, rounds: int = 5) -> list[str]:
    """Unmount everything below `prefix`; lazily if a mount is busy. What is still mounted."""
    for _ in range(rounds):
        points = mounts_under(prefix)
        if not points:
            return []
        for point in points:
            result = subprocess.run(["umount", point], capture_output=True, timeout=30, check=False)
            if result.returncode != 0:
                subprocess.run(
                    ["umount", "-l", point], capture_output=True, timeout=30, check=False
                )
    return mounts_under(prefix)


def _cgroup_dirs(cgroup_root: str) -> list[Path]:
    """Every cgroup directory under the cluster's cgroup root (itself included), deepest
    first, in every hierarchy."""
    dirs: list[Path] = []
    try:
        hierarchies = [p for p in CGROUP_ROOT.iterdir() if p.is_dir()]
    except OSError:
        return dirs
    for hierarchy in hierarchies:
        top = hierarchy / cgroup_root.strip("/")
        if top.is_dir():
            dirs.extend(p for p in top.rglob("*") if p.is_dir())
            dirs.append(top)
    return sorted(dirs, key=lambda p: len(p.parts), reverse=True)


def kill_pod_processes(cgroup_root: str, timeout: float = 20.0) -> None:
    """SIGKILL every process in the cluster's cgroups, by PID, until none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids: set[int] = set()
        for directory in _cgroup_dirs(cgroup_root):
            try:
                pids.update(int(x) for x in (directory / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def remove_cgroups(cgroup_root: str, timeout: float = 20.0) -> list[str]:
    """rmdir the cluster's cgroups, deepest first, retrying while they drain. What is left."""
    deadline = time.monotonic() + timeout
    left = _cgroup_dirs(cgroup_root)
    while left and time.monotonic() < deadline:
        for directory in left:
            with contextlib.suppress(OSError):
                directory.rmdir()
        left = _cgroup_dirs(cgroup_root)
        if left:
            time.sleep(0.2)
    return [str(d) for d in left]


def kill_shims(containerd_socket: Path, grace: float = 5.0) -> None:
    """Stop the containerd shims that our containerd started (their -address is our socket)."""
    ours = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(int(entry.name))
        if argv and argv[0].endswith("containerd-shim-runc-v2") and str(containerd_socket) in argv:
            ours.append(int(entry.name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in ours):
            for pid in ours:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)


def _mounted_elsewhere() -> set[str]:
    """Mount points in the other mount namespaces on this machine (another cluster's binds)."""
    mine = os.readlink("/proc/self/ns/mnt")
    seen = {mine}
    points: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.readlink(entry / "ns" / "mnt")
            if ns in seen:
                continue
            seen.add(ns)
            lines = (entry / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        points.update(_unescape(line.split()[4]) for line in lines)
    return points


def remove_created_paths(paths: list[str]) -> list[str]:
    """Remove the (now empty) mount points bring-up created, deepest first; one that another
    mount namespace still mounts on stays: removing it would detach that cluster's mount."""
    busy = _mounted_elsewhere()
    removed = []
    for path in sorted(paths, key=lambda p: p.count("/"), reverse=True):
        if path in busy or any(b.startswith(path + "/") for b in busy):
            continue
        with contextlib.suppress(OSError):
            Path(path).rmdir()
            removed.append(path)
    return removed


def delete_bridge(ip: str, bridge: str) -> None:
    if Path(f"/sys/class/net/{bridge}").exists():
        subprocess.run([ip, "link", "delete", bridge], capture_output=True, check=False, timeout=30)


def undo_hugetlb(snapshot: HostSnapshot) -> None:
    if snapshot.mounted_hugetlb:
        subprocess.run(["umount", str(HUGETLB)], capture_output=True, check=False, timeout=30)
    if snapshot.created_hugetlb_dir:
        remove_created_paths([str(HUGETLB)])
