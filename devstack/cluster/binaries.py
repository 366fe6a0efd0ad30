"""Finding the programs a local cluster needs.

The Kubernetes binaries (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
kubectl, csi-sanity) are found through one setting, in this order:

1. `KV_K8S_BIN_DIR`: a directory holding them, plain or xz-compressed (`kubelet` or `kubelet.xz`);
2. `PATH`;
3. `../shared/k8s/` beside the repository (xz-compressed test tools).

Compressed binaries are unpacked once into a cache shared across runs (`KV_K8S_CACHE`, default
`~/.cache/kv-driver/k8s`), keyed by the archive's size and modification time.

Everything else comes from Debian packages (`etcd-server`, `containerd`, `runc`,
`containernetworking-plugins`, `busybox-static`, `iptables`); `missing()` names what is absent
and the package that brings it.
"""

from __future__ import annotations

import lzma
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ENV_BIN_DIR = "KV_K8S_BIN_DIR"
ENV_CACHE = "KV_K8S_CACHE"
KUBE_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
)
# Host programs and the Debian package each comes from.
HOST_PROGRAMS = {
    "etcd": "etcd-server",
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "busybox": "busybox-static",
    "iptables": "iptables",
    "ip": "iproute2",
    "mount": "mount",
}
CNI_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")


class BinaryNotFound(RuntimeError):
    """A program the cluster needs is not installed; the message says how to get it."""


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


def shared_dir() -> Path:
    return _repo_root().parent / "shared" / "k8s"


def cache_dir() -> Path:
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "kv-driver" / "k8s"


def _unpack(archive: Path, name: str) -> Path:
    """The cached, executable copy of an xz archive (unpacked once, atomically)."""
    st = archive.stat()
    target = cache_dir() / f"{name}-{st.st_size}-{int(st.st_mtime)}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    with lzma.open(archive) as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    partial.chmod(0o755)
    partial.rename(target)
    return target


def _in_dir(directory: Path, name: str) -> Path | None:
    plain = directory / name
    if plain.is_file() and os.access(plain, os.X_OK):
        return plain
    packed = directory / f"{name}.xz"
    if packed.is_file():
        return _unpack(packed, name)
    return None


def kube_binary(name: str) -> Path:
    """One Kubernetes test binary, found through KV_K8S_BIN_DIR, then PATH, then ../shared/k8s."""
    configured = os.environ.get(ENV_BIN_DIR)
    if configured:
        found = _in_dir(Path(configured), name)
        if found is None:
            raise BinaryNotFound(f"{ENV_BIN_DIR}={configured} has neither {name} nor {name}.xz")
        return found
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    found = _in_dir(shared_dir(), name)
    if found is None:
        raise BinaryNotFound(
            f"{name} not found: set {ENV_BIN_DIR} to a directory holding it, put it on PATH, "
            f"or provide {shared_dir()}/{name}.xz"
        )
    return found


def host_program(name: str) -> Path:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not found:
        raise BinaryNotFound(
            f"{name} not found: install the Debian package {HOST_PROGRAMS.get(name, name)}"
        )
    return Path(found)


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every program a cluster runs."""

    apiserver: Path
    controller_manager: Path
    scheduler: Path
    kubelet: Path
    kubectl: Path
    etcd: Path
    containerd: Path
    ctr: Path
    runc: Path
    busybox: Path
    iptables: Path
    ip: Path
    cni_dir: Path = CNI_DIR

    @classmethod
    def find(cls) -> Binaries:
        """Every program, or BinaryNotFound naming the first one missing."""
        host_program("containerd-shim-runc-v2")
        for plugin in CNI_PLUGINS:
            if not (CNI_DIR / plugin).is_file():
                raise BinaryNotFound(
                    f"CNI plugin {CNI_DIR / plugin} not found: install the Debian package "
                    "containernetworking-plugins"
                )
        return cls(
            apiserver=kube_binary("kube-apiserver"),
            controller_manager=kube_binary("kube-controller-manager"),
            scheduler=kube_binary("kube-scheduler"),
            kubelet=kube_binary("kubelet"),
            kubectl=kube_binary("kubectl"),
            etcd=host_program("etcd"),
            containerd=host_program("containerd"),
            ctr=host_program("ctr"),
            runc=host_program("runc"),
            busybox=host_program("busybox"),
            iptables=host_program("iptables"),
            ip=host_program("ip"),
        )


def missing() -> list[str]:
    """Why a cluster cannot run here (empty when it can): one reason per missing piece."""
    reasons: list[str] = []
    if os.geteuid() != 0:
        reasons.append("a local cluster needs root (mounts, cgroups, network namespaces)")
    for name in KUBE_BINARIES:
        try:
            kube_binary(name)
        except BinaryNotFound as exc:
            reasons.append(str(exc))
    for name in HOST_PROGRAMS:
        try:
            host_program(name)
        except BinaryNotFound as exc:
            reasons.append(str(exc))
    for plugin in CNI_PLUGINS:
        if not (CNI_DIR / plugin).is_file():
            reasons.append(f"{CNI_DIR / plugin} not found: install containernetworking-plugins")
    return reasons
