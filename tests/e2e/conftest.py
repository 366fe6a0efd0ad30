"""The end-to-end tier: a real single-node Kubernetes (`devstack.cluster`), the node plugin as a
host process registered with the real kubelet, the FlexVolume shim installed in kubelet's
plugin dir, and a devstack of its own (NMI on the default port 2579, so the seed pod's options
are exactly what users write).

Without the binaries or packages the tier is skipped with the reason, except under `CI=true`,
where it must run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.client import Devstack
from devstack.cluster import Cluster, missing

DRIVER = "kv.csi.azure.com"
NMI_DEFAULT_PORT = 2579


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.timeout(600))


@pytest.fixture(scope="session")
def e2e_root() -> Iterator[Path]:
    reasons = missing()
    if reasons:
        message = "real-cluster tier cannot run: " + "; ".join(reasons)
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the binaries and packages must be installed)")
        pytest.skip(message)
    # Short and under /tmp: unix socket paths stay well below 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="kv-e2e-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def e2e_devstack(e2e_root: Path) -> Iterator[Devstack]:
    extra = ["--nmi-port", str(NMI_DEFAULT_PORT)] if _port_free(NMI_DEFAULT_PORT) else []
    stack = Devstack.start(e2e_root / "devstack", extra_args=extra)
    try:
        yield stack
    finally:
        stack.stop()


class NodePlugin:
    """The node plugin (`python -m driver`) as a host process, as the DaemonSet would run it."""

    def __init__(self, root: Path, cluster: Cluster, devstack: Devstack) -> None:
        self.root = root
        self.csi_socket = cluster.kubelet_root / "plugins" / DRIVER / "csi.sock"
        self.flex_socket = root / "flex.sock"
        self.state_dir = root / "state"
        self.log_path = root / "driver.log"
        self.argv = [
            sys.executable, "-m", "driver",
            "--endpoint", f"unix://{self.csi_socket}",
            "--nodeid", cluster.node_name,
            "--registration-dir", str(cluster.plugins_registry),
            "--kubelet-registration-path", str(self.csi_socket),
            "--state-dir", str(self.state_dir),
            "--flexvolume-socket", str(self.flex_socket),
            "--cloud-config", str(devstack.cloud_config),
            "--metrics-addr", "127.0.0.1:0",
            "--rotation-poll-interval", "2s",
            "--log-level", "debug",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodePlugin:
        self.csi_socket.parent.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not self.csi_socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node plugin did not start:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[Path]:
        """Volume records in the plugin's state dir (one per mounted volume)."""
        return sorted(p for p in self.state_dir.rglob("*.json") if p.is_file())


def registered(cluster: Cluster) -> bool:
    csinode = cluster.api(f"/apis/storage.k8s.io/v1/csinodes/{cluster.node_name}")
    drivers = (csinode or {}).get("spec", {}).get("drivers") or []
    return any(d.get("name") == DRIVER for d in drivers)


@pytest.fixture(scope="session")
def cluster(e2e_root: Path, repo_root: Path) -> Iterator[Cluster]:
    flex_socket = e2e_root / "driver" / "flex.sock"
    kubelet_env = {
        # kubelet passes its environment to the FlexVolume shim it execs.
        "KV_FLEX_SOCKET": str(flex_socket),
        "KV_FLEX_LOG": str(e2e_root / "flexvolume.log"),
    }
    local = Cluster(e2e_root / "cluster", kubelet_env=kubelet_env, timeout=240)
    try:
        local.up()
        python = shutil.which("python3") or sys.executable
        subprocess.run(
            ["sh", str(repo_root / "flexvolume" / "install.sh")],
            env={**os.environ, "TARGET_DIR": str(local.volume_plugin_dir),
                 "KEEP_RUNNING": "false", "SHIM_PYTHON": python},
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        local.kubectl("apply", "-f", str(repo_root / "deploy" / "driver" / "csidriver.yaml"))
        yield local
    finally:
        problems = local.down()
        assert not problems, f"cluster teardown left: {problems}"


@pytest.fixture(scope="session")
def node_plugin(cluster: Cluster, e2e_devstack: Devstack, e2e_root: Path) -> Iterator[NodePlugin]:
    plugin = NodePlugin(e2e_root / "driver", cluster, e2e_devstack).start()
    try:
        deadline = time.monotonic() + 120
        while not registered(cluster):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "kubelet did not register the node plugin within 120 s:\n"
                    + plugin.log()[-3000:]
                )
            time.sleep(0.5)
        yield plugin
    finally:
        # Pods go first (kubelet unmounts through the plugin), then the plugin.
        cluster.kubectl(
            "delete", "pods", "--all", "-n", "default", "--wait=true", "--timeout=120s",
            timeout=180, check=False,
        )  # fmt: skip
        plugin.stop()


@pytest.fixture(scope="session")
def nmi_options(e2e_devstack: Devstack) -> dict[str, str]:
    """What pod-identity volumes need beyond the user's options: nothing when NMI got 2579."""
    port = e2e_devstack.nmi_port
    return {} if port == NMI_DEFAULT_PORT else {"nmiport": str(port)}


def dump(value: object) -> str:
    return json.dumps(value, indent=1)
