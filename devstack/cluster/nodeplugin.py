"""Our node plugin on the local cluster as a host process, as the DaemonSet would run it:
its CSI socket under kubelet's plugins dir, registered through `plugins_registry/`, the
FlexVolume shim installed in kubelet's `--volume-plugin-dir`, and the CSIDriver object applied.

The plugin's state and FlexVolume bridge socket are in /run/kv-driver, as in the DaemonSet, so
the shim finds the socket at its default path whether the plugin runs here or as a pod. kubelet
passes its environment to the FlexVolume drivers it execs: `flex_env` only moves the shim's
log into the state dir.
"""

from __future__ import annotations

import json
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


RUN_DIR = Path("/run/kv-driver")


def flex_env(log_dir: Path) -> dict[str, str]:
    """kubelet environment for the shim it execs: its call log under `log_dir`."""
    return {"KV_FLEX_LOG": str(log_dir / "flexvolume.log")}


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
        self.state_dir = RUN_DIR
        self.log_path = root / "driver.log"
        self.rotation_interval = 2.0
        self.argv = [
            sys.executable, "-m", "driver",
            "--endpoint", f"unix://{self.csi_socket}",
            "--nodeid", cluster.node_name,
            "--registration-dir", str(cluster.plugins_registry),
            "--kubelet-registration-path", str(self.csi_socket),
            "--state-dir", str(self.state_dir),
            "--flexvolume-socket", str(RUN_DIR / "flex.sock"),
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
        return sorted((self.state_dir / "volumes").glob("*.json"))


class DaemonSetPlugin:
    """The node plugin as deploy/ runs it: `kubectl apply -k` of deploy/driver with only the image
    overridden (a kustomization in the state dir), the FlexVolume installer DaemonSet copying
    the shim, the node DaemonSet registering with kubelet. Same interface as NodePlugin."""

    def __init__(self, root: Path, cluster: Cluster, image: str, cloud_config: str):
        self.root = root
        self.cluster = cluster
        self.image = image
        self.cloud_config = cloud_config
        # deploy/driver/node-daemonset.yaml: --rotation-poll-interval=2m
        self.rotation_interval = 120.0
        self.state_dir = RUN_DIR
        self.overlay = root / "deploy"

    def _write_overlay(self) -> None:
        name, tag = self.image.rsplit(":", 1)
        self.overlay.mkdir(parents=True, exist_ok=True)
        base = os.path.relpath(REPO / "deploy" / "driver", self.overlay)
        (self.overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            f"resources:\n  - {base}\n"
            "images:\n"
            f"  - name: ghcr.io/kv-driver/kv-driver\n    newName: {name}\n    newTag: {tag}\n"
            # This cluster has no kube-proxy, so the `kubernetes` Service address that in-cluster
            # clients use leads nowhere: point the (host-network) node plugin at the API
            # server's own address instead. A real cluster needs no such patch.
            "patches:\n"
            "  - target: {kind: DaemonSet, name: kv-csi-node}\n"
            "    patch: |-\n"
            "      - op: add\n"
            "        path: /spec/template/spec/containers/0/env/-\n"
            '        value: {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}\n'
            "      - op: add\n"
            "        path: /spec/template/spec/containers/0/env/-\n"
            f'        value: {{name: KUBERNETES_SERVICE_PORT, value: "{self.cluster.lay.apiserver_port}"}}\n'
        )

    def _publish_devstack_config(self) -> None:
        """The devstack's cloud config and CA where the pod finds them (its state hostPath)."""
        target = RUN_DIR / "devstack"
        target.mkdir(parents=True, exist_ok=True)
        cloud = json.loads(Path(self.cloud_config).read_text())
        if cloud.get("ca_bundle"):
            shutil.copyfile(cloud["ca_bundle"], target / "ca.pem")
            cloud["ca_bundle"] = str(target / "ca.pem")
        (target / "cloud.json").write_text(json.dumps(cloud))

    def start(self, timeout: float = 240.0) -> DaemonSetPlugin:
        self._publish_devstack_config()
        self._write_overlay()
        shim = self.cluster.volume_plugin_dir / "azure~kv" / "kv"
        shim.unlink(missing_ok=True)  # the installer DaemonSet must put it back
        self.cluster.kubectl("apply", "-k", str(self.overlay))
        self._wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while not shim.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the FlexVolume installer did not install {shim}:\n{self.tail()}"
                )
            time.sleep(0.5)
        return self

    def _wait_ready(self, timeout: float) -> None:
        for daemonset in ("kv-csi-node", "kv-flexvolume-installer"):
            result = self.cluster.kubectl(
                "rollout", "status", "-n", "kv-driver", f"daemonset/{daemonset}",
                f"--timeout={int(timeout)}s", timeout=timeout + 30, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(
                    f"daemonset {daemonset} not ready: {result.stderr}\n{self.tail()}"
                )
        reg_sock = self.cluster.plugins_registry / f"{DRIVER}-reg.sock"
        deadline = time.monotonic() + timeout
        while not (reg_sock.exists() and registered(self.cluster)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"kubelet did not register the plugin pod:\n{self.tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.cluster.kubectl(
            "delete", "-k", str(self.overlay), "--ignore-not-found", "--wait=true",
            "--timeout=180s", timeout=240, check=False,
        )  # fmt: skip
        shutil.rmtree(RUN_DIR / "devstack", ignore_errors=True)

    def restart(self) -> None:
        """Delete the plugin pod; the DaemonSet starts a new one, which registers again."""
        self.cluster.kubectl(
            "delete", "pod", "-n", "kv-driver", "-l", "app.kubernetes.io/name=kv-csi-node",
            "--wait=true", "--timeout=120s", timeout=180,
        )  # fmt: skip
        self._wait_ready(240)

    def tail(self, lines: int = 60) -> str:
        """The plugin pod's log tail and the namespace's warning events."""
        out = self.cluster.kubectl(
            "logs", "-n", "kv-driver", "daemonset/kv-csi-node", f"--tail={lines}", check=False
        )
        events = self.cluster.kubectl(
            "get", "events", "-n", "kv-driver", "--field-selector", "type=Warning", check=False
        )
        return out.stdout + out.stderr + events.stdout

    def records(self) -> list[Path]:
        return sorted((self.state_dir / "volumes").glob("*.json"))
