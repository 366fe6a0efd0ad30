"""What a cluster changes on the host, recorded before bring-up so teardown can undo exactly it.

- sysctls kubelet and the CNI bridge plugin set (overcommit, panic, ip_forward ...);
- the `hugetlb` cgroup hierarchy, mounted when missing (kubelet always sends hugetlb limits);
- iptables rules and chains (none are expected: kubelet's are turned off; recorded anyway);
- kubelet's pod logs under /var/log, network namespaces under /run/netns, CNI's result cache.
"""

from __future__ import annotations

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
# Host directories kubelet, containerd and CNI write to whatever their flags say (kubelet v1.24
# hard-codes its pod logs and device-plugin socket; containerd 1.6 its shim sockets). New
# entries in them are the cluster's and go on teardown; a root that did not exist goes whole.
WATCHED_DIRS = (
    "/var/log/pods",
    "/var/log/containers",
    "/run/netns",
    "/var/lib/cni/results",
    "/var/lib/cni/networks",
    "/var/lib/kubelet/device-plugins",
    "/run/containerd/s",
    "/run/containerd/runc/k8s.io",
)
CREATED_ROOTS = (
    "/var/log/pods",
    "/var/log/containers",
    "/run/netns",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/run/containerd",
)
IPTABLES_TABLES = ("filter", "nat", "mangle")


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


def iptables_rules(iptables: str) -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    for table in IPTABLES_TABLES:
        result = subprocess.run(
            [iptables, "-w", "5", "-t", table, "-S"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if result.returncode == 0:
            rules[table] = result.stdout.splitlines()
    return rules


def undo_iptables(iptables: str, before: dict[str, list[str]]) -> list[str]:
    """Delete the rules, then the chains, that appeared since `before`; what was removed."""
    removed: list[str] = []
    now = iptables_rules(iptables)
    for table, lines in now.items():
        old = set(before.get(table, []))
        new = [line for line in lines if line not in old]
        for line in new:
            if line.startswith("-A "):
                args = ["-D", *line.split()[1:]]
                subprocess.run([iptables, "-w", "5", "-t", table, *args], check=False, timeout=30)
                removed.append(f"{table}: {line}")
        for line in new:
            if line.startswith("-N "):
                chain = line.split()[1]
                subprocess.run(
                    [iptables, "-w", "5", "-t", table, "-F", chain], check=False, timeout=30
                )
                subprocess.run(
                    [iptables, "-w", "5", "-t", table, "-X", chain], check=False, timeout=30
                )
                removed.append(f"{table}: chain {chain}")
    return removed


def listing(directory: str) -> list[str]:
    try:
        return sorted(p.name for p in Path(directory).iterdir())
    except OSError:
        return []


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
    """The host as it was before bring-up (saved as JSON in the state dir)."""

    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[str, list[str]] = field(default_factory=dict)
    listings: dict[str, list[str]] = field(default_factory=dict)
    absent_roots: list[str] = field(default_factory=list)
    mounted_hugetlb: bool = False
    created_hugetlb_dir: bool = False

    @classmethod
    def take(cls, iptables: str) -> HostSnapshot:
        return cls(
            sysctls=read_sysctls(),
            iptables=iptables_rules(iptables),
            listings={d: listing(d) for d in WATCHED_DIRS},
            absent_roots=[d for d in CREATED_ROOTS if not Path(d).exists()],
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> HostSnapshot:
        return cls(**json.loads(path.read_text()))
