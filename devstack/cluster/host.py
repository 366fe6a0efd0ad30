"""What a cluster changes on the host, and how it stays out of other clusters' way.

Several clusters may run on one machine at once (each test run in its own mount namespace), so
everything a cluster touches is its own:

- host paths that kubelet, containerd and CNI use whatever their flags say (kubelet v1.24
  hard-codes its pod logs and device-plugin socket; containerd 1.6 its shim sockets; CNI its
  network namespaces and result cache) and the paths deploy/'s manifests name are bind mounts
  of directories in the state dir (`HOST_BINDS`); a mount point that did not exist is removed;
- the pods' cgroups live under a cgroup root of the cluster's own (`/kv-<id>`), so neither a
  kubelet's orphan cleanup nor a teardown touches another cluster's pods;
- the CNI bridge and its subnet are named after the state dir.

Recorded before bring-up and put back on teardown: sysctls kubelet and the bridge plugin set
(overcommit, panic, ip_forward ...), and the `hugetlb` cgroup hierarchy, mounted when missing
(kubelet always sends hugetlb limits). No iptables rule is added: kubelet's chains are turned
off, the bridge does no masquerading, and there is no kube-proxy.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
HUGETLB = CGROUP_ROOT / "hugetlb"
# (host path, directory in the state dir bound onto it)
HOST_BINDS = (
    ("/var/lib/kubelet", "kubelet"),
    ("/etc/kubernetes/volumeplugins", "volume-plugins"),
    ("/run/kv-driver", "kv-driver-run"),
    ("/var/log/pods", "host/log-pods"),
    ("/var/log/containers", "host/log-containers"),
    ("/run/netns", "host/netns"),
    ("/var/lib/cni", "host/cni"),
    ("/run/containerd", "host/run-containerd"),
)


def cluster_id(root: Path) -> str:
    """A short id of this cluster's state dir, for its bridge, subnet and cgroup root."""
    return hashlib.sha256(str(root).encode()).hexdigest()[:6]


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    for name in SYSCTLS:
        try:
            values[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            continue
    return values


def restore_sysctls(saved: dict[str, str]) -> list[str]:
    """Write back every recorded sysctl that changed; the names restored."""
    restored = []
    for name, value in saved.items():
        path = _sysctl_path(name)
        try:
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
                restored.append(name)
        except OSError:
            continue
    return restored


def node_name() -> str:
    """The host name when it resolves to loopback (the API server dials kubelet by node name),
    else `localhost`."""
    name = socket.gethostname().lower()
    try:
        if socket.gethostbyname(name).startswith("127."):
            return name
    except OSError:
        pass
    return "localhost"


def bind_host_paths(root: Path) -> list[str]:
    """Bind each HOST_BINDS path onto its directory in the state dir; the mount points this
    created (removed again on teardown). kubelet's root is made shared, so Bidirectional mount
    propagation (the node plugin pod's mounts into pods' volume dirs) reaches kubelet."""
    created: list[str] = []
    for host_path, name in HOST_BINDS:
        source = root / name
        source.mkdir(parents=True, exist_ok=True)
        target = Path(host_path)
        missing = [p for p in (target, *target.parents) if not p.exists()]
        created.extend(str(p) for p in reversed(missing))
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "--bind", str(source), host_path], check=True, capture_output=True, timeout=30
        )
    subprocess.run(
        ["mount", "--make-rshared", "/var/lib/kubelet"], check=True, capture_output=True, timeout=30
    )
    return created


def make_cgroup_root(name: str) -> list[str]:
    """Create `/<name>` in every cgroup v1 hierarchy (kubelet requires its cgroup root to
    exist); cpuset needs its cpus and mems filled in from the parent before use."""
    created = []
    for hierarchy in sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir()):
        if not (hierarchy / "cgroup.procs").exists() or hierarchy.name == "unified":
            continue
        path = hierarchy / name.strip("/")
        if not path.exists():
            path.mkdir()
            created.append(str(path))
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (path / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((hierarchy / knob).read_text())
    return created


def hugetlb_mounted() -> bool:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].startswith("cgroup ") and "hugetlb" in fields[1]:
            return True
    return False


def mount_hugetlb() -> tuple[bool, bool]:
    """Mount the hugetlb hierarchy when missing: (we mounted it, we created its directory)."""
    if hugetlb_mounted():
        return False, False
    created = not HUGETLB.exists()
    HUGETLB.mkdir(exist_ok=True)
    subprocess.run(
        ["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(HUGETLB)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return True, created


@dataclass
class HostSnapshot:
    """The host as it was before bring-up, and what bring-up created (JSON in the state dir)."""

    sysctls: dict[str, str] = field(default_factory=dict)
    mounted_hugetlb: bool = False
    created_hugetlb_dir: bool = False
    created_paths: list[str] = field(default_factory=list)
    cgroup_dirs: list[str] = field(default_factory=list)

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(sysctls=read_sysctls())

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> HostSnapshot:
        return cls(**json.loads(path.read_text()))
