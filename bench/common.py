"""Shared parts of the benchmarks: the run context, result rows, timing, volumes, a daemon.

Every benchmark module exposes `NAME`, `TITLE` and `run(ctx: Context) -> list[Row]`; the runner
(bench/__main__.py) starts one devstack, hands each module the same `Context` and collects rows.
A row compares a measured value with a baseline measured in the same run and with a target.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.client import Devstack

TENANT = "11111111-1111-1111-1111-111111111111"
VAULT = "testkv"
POD = "nginx-csi-kv-podid"  # a seed pod that NMI gives the `pod-identity` identity
NAMESPACE = "default"
REPO = Path(__file__).resolve().parent.parent
SHIM = REPO / "flexvolume" / "azure~kv" / "kv"


# -- result rows ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. `target` is (operator, number), checked against `value`."""

    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: tuple[str, float] | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)
    benchmark: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        op, limit = self.target
        return self.value <= limit if op == "<=" else self.value >= limit

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        op, limit = self.target
        return f"{'≤' if op == '<=' else '≥'} {fmt(limit)} {self.unit}"

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figure": self.figure,
            "value": round(self.value, 3),
            "unit": self.unit,
            "baseline": None if self.baseline is None else round(self.baseline, 3),
            "baseline_label": self.baseline_label,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "target": None
            if self.target is None
            else {"op": self.target[0], "value": self.target[1], "unit": self.unit},
            "pass": self.passed,
            "note": self.note,
            "samples": [round(s, 3) for s in self.samples],
        }


def fmt(number: float) -> str:
    if number == int(number):
        return f"{int(number)}"
    if abs(number) >= 100:
        return f"{number:.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}"
    return f"{number:.2f}"


# -- context --------------------------------------------------------------------------------------


@dataclass
class Context:
    devstack: Devstack
    work: Path  # short path under /tmp: unix socket paths are limited to 107 bytes
    mount_mode: str
    quick: bool

    def runs(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full

    def scratch(self, name: str) -> Path:
        path = self.work / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    def settings(self, state_dir: Path, **overrides: Any) -> Any:
        from driver.config import Settings

        values: dict[str, Any] = {
            "state_dir": state_dir,
            "mount_mode": self.mount_mode,
            "cloud_config": Path(self.devstack.cloud_config),
            "rotation_poll_interval": 120.0,
            "nmi_deadline": 5.0,
            "request_timeout": 5.0,
        }
        values.update(overrides)
        return Settings(**values)


def default_mount_mode() -> str:
    """tmpfs only where real mounts cannot leak to the host (root in a private namespace)."""
    from driver.mounts import private_mount_namespace

    return "tmpfs" if private_mount_namespace() else "dir"


def release_mounts(root: Path) -> None:
    """Unmount whatever a crashed benchmark left mounted under `root` (deepest first)."""
    from driver.mounts import TmpfsMounter, mount_points

    prefix = str(root.resolve()) + "/"
    leftovers = sorted((p for p in mount_points() if p.startswith(prefix)), reverse=True)
    for point in leftovers:
        TmpfsMounter().release(Path(point))


# -- timing ---------------------------------------------------------------------------------------


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def timed_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return ms_since(t0)


class Budget:
    """A wall-clock allowance for one benchmark: loops stop early rather than overrun."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        return self.left() <= 0


# -- volumes --------------------------------------------------------------------------------------


def pod_uid() -> str:
    return str(uuid.uuid4())


def csi_attributes(
    stack: Devstack,
    names: Iterable[str],
    *,
    uid: str,
    versions: Iterable[str] | None = None,
) -> dict[str, str]:
    """CSI volume attributes for the seed pod with pod identity, azure/kv list style."""
    names = list(names)
    attrs = {
        "usePodIdentity": "true",
        "nmiport": str(stack.nmi_port),
        "keyvaultName": VAULT,
        "tenantId": TENANT,
        "csi.storage.k8s.io/pod.name": POD,
        "csi.storage.k8s.io/pod.namespace": NAMESPACE,
        "csi.storage.k8s.io/pod.uid": uid,
        "csi.storage.k8s.io/ephemeral": "true",
        "keyvaultobjectnames": ";".join(names),
        "keyvaultobjecttypes": ";".join("secret" for _ in names),
    }
    if versions is not None:
        attrs["keyvaultobjectversions"] = ";".join(versions)
    return attrs


def flex_options(stack: Devstack, names: Iterable[str], *, uid: str) -> dict[str, str]:
    """The options kubelet hands the azure/kv shim for the same volume, pod identity."""
    names = list(names)
    return {
        "usepodidentity": "true",
        "nmiport": str(stack.nmi_port),
        "keyvaultname": VAULT,
        "tenantid": TENANT,
        "keyvaultobjectnames": ";".join(names),
        "keyvaultobjecttypes": ";".join("secret" for _ in names),
        "kubernetes.io/fsType": "",
        "kubernetes.io/pod.name": POD,
        "kubernetes.io/pod.namespace": NAMESPACE,
        "kubernetes.io/pod.uid": uid,
        "kubernetes.io/pvOrVolumeName": "secrets",
        "kubernetes.io/readwrite": "rw",
        "kubernetes.io/serviceAccount.name": "default",
    }


def csi_target(root: Path, uid: str, name: str = "kv") -> Path:
    """kubelet's CSI mount path; kubelet creates the parent, the driver the dir itself."""
    path = root / "pods" / uid / "volumes" / "kubernetes.io~csi" / name / "mount"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def flex_target(root: Path, uid: str, name: str = "kv") -> Path:
    """kubelet's FlexVolume mount dir `<root>/pods/<uid>/volumes/azure~kv/<name>`."""
    path = root / "pods" / uid / "volumes" / "azure~kv" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def ensure_secrets(stack: Devstack, prefix: str, count: int) -> tuple[list[str], list[str]]:
    """`count` secrets named `<prefix>-NN` in the vault; returns (names, current versions)."""
    names = [f"{prefix}-{i:02d}" for i in range(count)]
    versions = [stack.set_secret(VAULT, name, f"{name}-value-{uuid.uuid4().hex}") for name in names]
    return names, versions


def keyvault_requests(stack: Devstack) -> int:
    """Requests the vault received (every operation and status, 401 challenges included)."""
    return stack.count(vault=VAULT)


# -- a daemon subprocess ----------------------------------------------------------------------------


class Daemon:
    """A real `python -m driver` process with its own state dir and sockets."""

    def __init__(self, ctx: Context, root: Path, *extra: str) -> None:
        self.root = root
        self.csi_socket = root / "csi.sock"
        self.flex_socket = root / "flex.sock"
        self.log_path = root / "daemon.log"
        self.argv = [
            sys.executable, "-m", "driver",
            "--endpoint", f"unix://{self.csi_socket}",
            "--nodeid", "bench-node",
            "--state-dir", str(root / "state"),
            "--mount-mode", ctx.mount_mode,
            "--cloud-config", str(ctx.devstack.cloud_config),
            "--flexvolume-socket", str(self.flex_socket),
            "--nmi-deadline", "5s",
            "--request-timeout", "5s",
            "--log-level", "warning",
            *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: Any = None

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Daemon:
        import grpc

        from driver.csi.proto import csi_pb2, csi_pb2_grpc

        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        stub = csi_pb2_grpc.IdentityStub(self.channel)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}; see {self.log_path}")
            try:
                if stub.Probe(csi_pb2.ProbeRequest(), timeout=1).ready.value:
                    return self
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"daemon not ready within {timeout:.0f} s; see {self.log_path}")

    @property
    def channel(self) -> Any:
        if self._channel is None:
            import grpc

            self._channel = grpc.insecure_channel(f"unix://{self.csi_socket}")
        return self._channel

    @property
    def node(self) -> Any:
        from driver.csi.proto import csi_pb2_grpc

        return csi_pb2_grpc.NodeStub(self.channel)

    def publish(self, volume_id: str, target: Path, attributes: dict[str, str]) -> None:
        from driver.csi.proto import csi_pb2

        mode = csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_READER_ONLY
        request = csi_pb2.NodePublishVolumeRequest(
            volume_id=volume_id,
            target_path=str(target),
            readonly=True,
            volume_capability=csi_pb2.VolumeCapability(
                mount=csi_pb2.VolumeCapability.MountVolume(),
                access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
            ),
            volume_context=attributes,
        )
        self.node.NodePublishVolume(request, timeout=60)

    def unpublish(self, volume_id: str, target: Path) -> None:
        from driver.csi.proto import csi_pb2

        self.node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target)),
            timeout=60,
        )

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("VmRSS not found")

    def stop(self, timeout: float = 20.0) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def shim_python() -> str:
    """The node's system interpreter, as kubelet would find it; else the one running us."""
    for candidate in ("/usr/bin/python3", "/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("python3") or sys.executable


def run_shim(python: str, socket: Path, log: Path, *args: str) -> tuple[str, float]:
    """Exec the shim as kubelet does; (stdout, wall ms). Fails loudly on a non-Success reply."""
    env = {"PATH": "/usr/bin:/bin", "KV_FLEX_SOCKET": str(socket), "KV_FLEX_LOG": str(log)}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python, "-I", "-S", str(SHIM), *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    elapsed = ms_since(t0)
    out = proc.stdout.decode("utf-8", errors="replace")
    if '"Success"' not in out:
        raise RuntimeError(f"shim {args[0]} failed ({proc.returncode}): {out.strip()[:300]}")
    return out, elapsed
