"""Our node plugin on the local cluster as a host process, as the DaemonSet would run it:
its CSI socket under kubelet's plugins dir, registered through `plugins_registry/`, the
FlexVolume shim installed in kubelet's `--volume-plugin-dir`, and the CSIDriver object applied.

kubelet passes its environment to the FlexVolume drivers it execs, so the shim finds the
plugin's bridge socket through `KV_FLEX_SOCKET` in kubelet's environment (`flex_env`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.cluster import Cluster

DRIVER = "kv.csi.azure.com"
REPO = Path(__file__).resolve().parent.parent.parent


def flex_env(plugin_root: Path) -> dict[str, str]:
    """kubelet environment that points the shim at a plugin rooted at `plugin_root`."""
    return {
        "KV_FLEX_SOCKET": str(plugin_root / "flex.sock"),
        "KV_FLEX_LOG": str(plugin_root / "flexvolume.log"),
    }


def install(cluster: Cluster) -> None:
    """Install the shim with flexvolume/install.sh and apply deploy/'s CSIDriver object."""
    python = shutil.which("python3") or sys.executable
    subprocess.run(
        ["sh", str(REPO / "flexvolume" / "install.sh")],
        env={**os.environ, "TARGET_DIR": str(cluster.volume_plugin_dir),
             "KEEP_RUNNING": "false", "SHIM_PYTHON": python},
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    cluster.kubectl("apply", "-f", str(REPO / "deploy" / "driver" / "csidriver.yaml"))


def registered(cluster: Cluster) -> bool:
    """Whether kubelet lists the driver in this node's CSINode object."""
    csinode = cluster.api(f"/apis/storage.k8s.io/v1/csinodes/{cluster.node_name}")
    drivers = (csinode or {}).get("spec", {}).get("drivers") or []
    return any(d.get("name") == DRIVER for d in drivers)


class NodePlugin:
    """`python -m driver` for this cluster, talking to the devstack in `cloud_config`."""

    def __init__(self, root: Path, cluster: Cluster, cloud_config: str, *extra: str) -> None:
        self.root = root
        self.cluster = cluster
        self.csi_socket = cluster.kubelet_root / "plugins" / DRIVER / "csi.sock"
        self.state_dir = root / "state"
        self.log_path = root / "azcommon.log"
        self.argv = [
            sys.executable, "-m", "driver",
            "--endpoint", f"unix://{self.csi_socket}",
            "--nodeid", cluster.node_name,
            "--registration-dir", str(cluster.plugins_registry),
            "--kubelet-registration-path", str(self.csi_socket),
            "--state-dir", str(self.state_dir),
            "--flexvolume-socket", flex_env(root)["KV_FLEX_SOCKET"],
            "--kubeconfig", str(cluster.kubeconfig),
            "--cloud-config", cloud_config,
            "--metrics-addr", "127.0.0.1:0",
            "--rotation-poll-interval", "2s",
            *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> NodePlugin:
        """Start and wait until kubelet has registered the plugin (CSINode lists it)."""
        self.csi_socket.parent.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        reg_sock = self.cluster.plugins_registry / f"{DRIVER}-reg.sock"
        while not (reg_sock.exists() and registered(self.cluster)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"node plugin exited {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kubelet did not register the node plugin:\n{self.tail()}")
            time.sleep(0.3)
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

    def tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def records(self) -> list[Path]:
        """Volume records in the plugin's state dir (one per mounted volume)."""
        return sorted(p for p in self.state_dir.rglob("*.json") if p.is_file())
