"""An API server alone (etcd + kube-apiserver on free loopback ports), for tests of code that
only talks to the API: watch-fed caches, CRD types, NMI's lookups, MIC's writes. No kubelet, no
containers, nothing changed on the host, so it can run while a full cluster runs elsewhere.

    with ApiServer(tmp_path).up() as api:
        api.kubeconfig   # admin (system:masters) kubeconfig
        api.kubectl("apply", "-f", "-", input=manifest)
        api.compact_etcd()   # watches from older versions get 410 Gone
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import requests

from devstack.cluster import _free_ports, components
from devstack.cluster.binaries import Binaries
from devstack.cluster.components import SA_ISSUER_DEFAULT, Layout
from devstack.cluster.pki import Pki
from devstack.cluster.process import Component, pid_alive


class ApiServer:
    """etcd and kube-apiserver under `state_dir`; `down()` stops both and removes the state."""

    def __init__(
        self, state_dir: Path, *, timeout: float = 120.0, watch_cache: bool = False
    ) -> None:
        self.root = Path(state_dir).resolve()
        self.watch_cache = watch_cache
        self.timeout = timeout
        self.components: list[Component] = []
        self.layout: Layout | None = None
        self.bin: Binaries | None = None

    @property
    def lay(self) -> Layout:
        if self.layout is None:
            raise RuntimeError("the API server is not up")
        return self.layout

    @property
    def kubeconfig(self) -> Path:
        return self.lay.kubeconfig

    @property
    def server(self) -> str:
        return self.lay.server

    @property
    def etcd_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.lay.etcd_client_port}"

    def up(self) -> ApiServer:
        self.bin = Binaries.find()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        ports = _free_ports(7)
        self.layout = Layout(self.root, "kv-apiserver-only", *ports)
        pki = Pki(self.lay.pki)
        admin = pki.issue("admin", "kv-cluster-admin", "system:masters")
        pki.kubeconfig(self.lay.kubeconfig, self.lay.server, "admin", admin)
        self._admin = (str(admin.cert), str(admin.key))
        try:
            etcd = self._start("etcd", components.etcd(self.bin, self.lay))
            etcd.wait(
                lambda: requests.get(self.etcd_endpoint + "/health", timeout=2).ok,
                "healthy",
                self.timeout,
            )
            argv = components.apiserver(self.bin, self.lay, pki, SA_ISSUER_DEFAULT)
            # No controller-manager makes the default service accounts: pods go without one.
            argv.append("--disable-admission-plugins=ServiceAccount")
            if not self.watch_cache:
                # Watches then read etcd directly, so compacting etcd really expires old
                # versions (410 Gone) instead of being served from the API server's window.
                argv.append("--watch-cache=false")
            api = self._start("kube-apiserver", argv)
            api.wait(self._ready, "ready", self.timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _start(self, name: str, argv: list[str]) -> Component:
        component = Component(name, argv, self.lay.logs / f"{name}.log").start()
        self.components.append(component)
        # The child can still be the forked Python for a moment (its cmdline not yet the
        # program's), which `Component.wait` would take for an exit: wait for the exec first.
        deadline = time.monotonic() + 10
        while component.pid and not pid_alive(component.pid, argv[0]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return component

    def _ready(self) -> bool:
        reply = requests.get(
            self.lay.server + "/readyz", cert=self._admin, verify=str(self.lay.pki / "ca.crt"),
            timeout=5,
        )  # fmt: skip
        return reply.text == "ok"

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        assert self.bin is not None
        result = subprocess.run(
            [str(self.bin.kubectl), f"--kubeconfig={self.kubeconfig}",
             f"--cache-dir={self.root / 'kubectl-cache'}", *args],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def compact_etcd(self) -> None:
        """Compact etcd's history up to now: watches from older versions then get 410 Gone."""
        status = requests.post(self.etcd_endpoint + "/v3/kv/range", json={"key": "AA=="}, timeout=5)
        revision = int(status.json()["header"]["revision"])
        requests.post(
            self.etcd_endpoint + "/v3/kv/compaction",
            json={"revision": revision, "physical": True},
            timeout=30,
        ).raise_for_status()

    def down(self) -> None:
        for component in reversed(self.components):
            component.stop(grace=10)
        self.components = []
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()
