"""A real single-node Kubernetes under one state dir: `Cluster(dir).up()` ... `.down()`.

etcd, kube-apiserver (RBAC, service-account issuer, admin kubeconfig), controller-manager,
scheduler, containerd with runc and a CNI bridge (with a gateway address), locally built pause
and busybox images, and kubelet with a FlexVolume plugin dir. Every wait is bounded; a failure
names the component and shows the tail of its log. `down()` leaves nothing mounted, running or
changed, and works from another process (`kv-devstack cluster down --state-dir DIR`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests

from devstack.cluster import components, images, teardown
from devstack.cluster.binaries import Binaries, BinaryNotFound, missing
from devstack.cluster.components import SA_ISSUER_DEFAULT, Layout
from devstack.cluster.host import (
    HOST_BINDS,
    HostSnapshot,
    bind_host_paths,
    make_cgroup_root,
    mount_hugetlb,
    node_name,
    restore_sysctls,
)
from devstack.cluster.pki import Pki
from devstack.cluster.process import Component, ComponentError

__all__ = ["BinaryNotFound", "Cluster", "ComponentError", "missing"]

STATE_FILE = "cluster.json"
HOST_FILE = "host.json"
# Stop order: nothing new is scheduled or created while pods go away; etcd goes last.
_STOP_ORDER = (
    "kube-scheduler",
    "kube-controller-manager",
    "kubelet",
    "containerd",
    "kube-apiserver",
    "etcd",
)


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _insecure_healthz(port: int) -> bool:
    """The scheduler's /healthz (served with a self-signed certificate it made itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reply = requests.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2)
    return reply.text == "ok"


class Cluster:
    """One local cluster. `timeout` scales every wait (CI machines are shared and slow)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        sa_issuer: str = SA_ISSUER_DEFAULT,
        timeout: float = 180.0,
        kubelet_env: dict[str, str] | None = None,
    ):
        self.root = Path(state_dir).resolve()
        self.sa_issuer = sa_issuer
        self.timeout = timeout
        # Extra environment for kubelet, which passes it on to the FlexVolume drivers it execs.
        self.kubelet_env = dict(kubelet_env or {})
        self.bin: Binaries | None = None
        self.layout: Layout | None = None
        self.components: dict[str, Component] = {}
        self.bring_up_seconds: float | None = None

    # -- paths users of the cluster need -------------------------------------------------------

    @property
    def lay(self) -> Layout:
        if self.layout is None:
            raise RuntimeError("the cluster is not up")
        return self.layout

    @property
    def kubeconfig(self) -> Path:
        return self.lay.kubeconfig

    @property
    def node_name(self) -> str:
        return self.lay.node_name

    @property
    def kubelet_root(self) -> Path:
        return self.lay.kubelet_root

    @property
    def volume_plugin_dir(self) -> Path:
        return self.lay.volume_plugin_dir

    @property
    def plugins_registry(self) -> Path:
        return self.lay.kubelet_root / "plugins_registry"

    @property
    def sa_public_key(self) -> Path:
        """The PEM public key that verifies this cluster's service-account tokens."""
        return self.lay.pki / "sa.pub"

    # -- bring-up ------------------------------------------------------------------------------

    def up(self) -> Cluster:
        """Bring everything up. Ports are picked free, then bound by the components: if another
        process took one in between, the whole bring-up is retried once with new ports."""
        started = time.monotonic()
        try:
            self._up_once()
        except ComponentError as exc:
            if "address already in use" not in str(exc):
                raise
            self._up_once()
        self.bring_up_seconds = time.monotonic() - started
        self._save()
        return self

    def _up_once(self) -> None:
        self.bin = Binaries.find()
        self.components = {}
        if (self.root / STATE_FILE).exists():
            Cluster.load(self.root).down()
        for leftover in (
            "pki",
            "etcd",
            "containerd",
            "cni",
            "kubelet",
            "logs",
            "kv-driver-run",
            "host",
        ):
            shutil.rmtree(self.root / leftover, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        ports = _free_ports(7)
        self.layout = Layout(self.root, node_name(), *ports)
        snapshot = HostSnapshot.take()
        snapshot.save(self.root / HOST_FILE)
        self._save()
        try:
            snapshot.mounted_hugetlb, snapshot.created_hugetlb_dir = mount_hugetlb()
            snapshot.save(self.root / HOST_FILE)
            snapshot.cgroup_dirs = make_cgroup_root(self.lay.cgroup_root)
            snapshot.save(self.root / HOST_FILE)
            snapshot.created_paths = bind_host_paths(self.root)
            snapshot.save(self.root / HOST_FILE)
            self._bring_up()
        except BaseException:
            self.down()
            raise

    def _start(self, name: str, argv: list[str]) -> Component:
        env = {**os.environ, **self.kubelet_env} if name == "kubelet" else None
        component = Component(name, argv, self.lay.logs / f"{name}.log", env).start()
        self.components[name] = component
        self._save()
        return component

    def _bring_up(self) -> None:
        b, lay, t = self.bin, self.lay, self.timeout
        assert b is not None
        pki = Pki(lay.pki)
        admin = pki.issue("admin", "kv-cluster-admin", "system:masters")
        pki.kubeconfig(lay.kubeconfig, lay.server, "admin", admin)
        self._admin = (str(admin.cert), str(admin.key))
        etcd = self._start("etcd", components.etcd(b, lay))
        containerd = self._start("containerd", components.containerd(b, lay))
        etcd.wait(
            lambda: requests.get(f"http://127.0.0.1:{lay.etcd_client_port}/health", timeout=2).ok,
            "healthy",
            t,
        )
        apiserver = self._start("kube-apiserver", components.apiserver(b, lay, pki, self.sa_issuer))
        containerd.wait(self._containerd_ready, "serving", t)
        try:
            images.build_and_import(b.ctr, lay.containerd_socket, b.busybox, self.root / "images")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            raise containerd.fail(f"image import failed: {exc}") from None
        apiserver.wait(lambda: self.api("/readyz", raw=True) == "ok", "ready", t)
        self._start("kube-controller-manager", components.controller_manager(b, lay, pki))
        self._start("kube-scheduler", components.scheduler(b, lay, pki))
        kubelet = self._start("kubelet", components.kubelet(b, lay, pki))
        kubelet.wait(self.node_ready, f"node {lay.node_name} Ready", t)
        self.components["kube-controller-manager"].wait(
            lambda: bool(self.api("/api/v1/namespaces/default/serviceaccounts/default")),
            "creating service accounts",
            t,
        )
        self.components["kube-scheduler"].wait(
            lambda: _insecure_healthz(lay.scheduler_port), "healthy", t
        )

    def _containerd_ready(self) -> bool:
        assert self.bin is not None
        result = subprocess.run(
            [str(self.bin.ctr), "--address", str(self.lay.containerd_socket), "version"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0

    # -- talking to it -------------------------------------------------------------------------

    def api(self, path: str, raw: bool = False) -> Any:
        """GET from the API server as the admin; the JSON body (or text with `raw`), None on 404."""
        reply = requests.get(
            self.lay.server + path,
            cert=self._admin,
            verify=str(self.lay.pki / "ca.crt"),
            timeout=10,
        )
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        return reply.text if raw else reply.json()

    def node_ready(self) -> bool:
        node = self.api(f"/api/v1/nodes/{self.lay.node_name}")
        if not node:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster as the admin."""
        assert self.bin is not None
        result = subprocess.run(
            [
                str(self.bin.kubectl),
                f"--kubeconfig={self.kubeconfig}",
                f"--cache-dir={self.root / 'kubectl-cache'}",
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def restart_kubelet(self) -> None:
        """Stop kubelet (SIGTERM) and start it again with the same flags; wait for Ready."""
        old = self.components["kubelet"]
        old.stop(grace=30)
        kubelet = self._start("kubelet", old.argv)
        kubelet.wait(self.node_ready, "Ready after restart", self.timeout)

    def log(self, component: str) -> Path:
        return self.lay.logs / f"{component}.log"

    # -- state ---------------------------------------------------------------------------------

    def _save(self) -> None:
        state = {
            "layout": {
                k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.lay).items()
            },
            "sa_issuer": self.sa_issuer,
            "kubelet_env": self.kubelet_env,
            "components": {
                name: {"pid": c.pid, "argv": c.argv} for name, c in self.components.items()
            },
            "bring_up_seconds": self.bring_up_seconds,
        }
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.root / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> Cluster:
        """The cluster recorded in `state_dir` (to talk to it or take it down)."""
        root = Path(state_dir).resolve()
        state = json.loads((root / STATE_FILE).read_text())
        cluster = cls(root, sa_issuer=state["sa_issuer"], kubelet_env=state.get("kubelet_env"))
        lay = state["layout"]
        lay["root"] = Path(lay["root"])
        cluster.layout = Layout(**lay)
        cluster.bring_up_seconds = state.get("bring_up_seconds")
        for name, raw in state["components"].items():
            component = Component(name, raw["argv"], cluster.lay.logs / f"{name}.log")
            component.pid = raw["pid"]
            cluster.components[name] = component
        cluster._admin = (str(root / "pki" / "admin.crt"), str(root / "pki" / "admin.key"))
        try:
            cluster.bin = Binaries.find()
        except BinaryNotFound:
            cluster.bin = None
        return cluster

    # -- teardown ------------------------------------------------------------------------------

    def down(self, pod_grace: float = 45.0) -> list[str]:
        """Take everything apart; returns what could not be cleaned (empty when all is gone)."""
        problems: list[str] = []
        if self.layout is None:
            return problems
        self._drain_pods(pod_grace)
        for name in _STOP_ORDER:
            component = self.components.get(name)
            if component is None:
                continue
            if name == "containerd":
                teardown.kill_pod_processes(self.lay.cgroup_root)
            component.stop(grace=5 if name == "kube-scheduler" else 15)
        teardown.kill_shims(self.lay.containerd_socket)
        teardown.kill_pod_processes(self.lay.cgroup_root)
        for host_path, _ in HOST_BINDS:
            problems += [f"still mounted: {p}" for p in teardown.unmount_under(host_path)]
        problems += [f"still mounted: {p}" for p in teardown.unmount_under(str(self.root))]
        snapshot_file = self.root / HOST_FILE
        snapshot = HostSnapshot.load(snapshot_file) if snapshot_file.exists() else HostSnapshot()
        teardown.remove_created_paths(snapshot.created_paths)
        teardown.delete_bridge(str(self.bin.ip) if self.bin else "ip", self.lay.bridge)
        problems += [f"cgroup left: {d}" for d in teardown.remove_cgroups(self.lay.cgroup_root)]
        teardown.undo_hugetlb(snapshot)
        restore_sysctls(snapshot.sysctls)
        for name, component in self.components.items():
            if component.running():
                problems.append(f"{name} (pid {component.pid}) still running")
        if not problems:
            (self.root / STATE_FILE).unlink(missing_ok=True)
            snapshot_file.unlink(missing_ok=True)
        self.components = {}
        return problems

    def _drain_pods(self, grace: float) -> None:
        """Let kubelet unmount the pods' volumes through the drivers while both still run."""
        kubelet = self.components.get("kubelet")
        apiserver = self.components.get("kube-apiserver")
        if not (kubelet and apiserver and kubelet.running() and apiserver.running()):
            return
        for name in ("kube-controller-manager", "kube-scheduler"):
            if name in self.components:
                self.components[name].stop(grace=5)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.kubectl(
                "delete", "pods", "--all", "--all-namespaces", "--grace-period=1",
                f"--timeout={int(grace)}s", "--wait=true",
                timeout=grace + 15, check=False,
            )  # fmt: skip
