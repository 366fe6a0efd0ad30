"""Our NMI on the local cluster, as its DaemonSet would run it: a host-network process on the
node with the nat rules that intercept pods' IMDS traffic, plus the identity objects MIC would
have written (until our MIC exists) for the devstack world's pod-identity pods.

The cluster's pods reach the node through the CNI bridge's gateway address, so the nat rules
send their IMDS traffic there (the DaemonSet's 127.0.0.1 target needs route_localnet, which
kube-proxy sets on real clusters and this cluster has no kube-proxy for).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from devstack.client import Devstack
from devstack.cluster import Cluster

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "components" / "pod-identity" / "crds.yaml"
IMDS_NODE = "devstack-node-0"
CHAIN = "kv-e2e-metadata"
# The devstack world's pods and the identities it gives them (devstack/README.md).
WORLD_PODS = {
    "nginx-flex-kv-podid": "pod-identity",
    "nginx-csi-kv-podid": "pod-identity",
    "no-access-pod": "no-access",
}
API = "aadpodidentity.k8s.io/v1"


def gateway(cluster: Cluster) -> str:
    """The bridge's address: the node as the cluster's pods see it."""
    return str(next(ipaddress.ip_network(cluster.lay.pod_cidr).hosts()))


def identity(ds: Devstack, name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": API, "kind": "AzureIdentity",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": 0, "clientID": ds.client_id(name), "resourceID": ds.resource_id(name)},
    }  # fmt: skip


def binding(name: str, selector: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": API, "kind": "AzureIdentityBinding",
        "metadata": {"name": f"{name}-binding", "namespace": namespace},
        "spec": {"azureIdentity": name, "selector": selector},
    }  # fmt: skip


def assigned(
    pod: str, ident: dict[str, Any], node: str, *, namespace: str = "default",
    state: str = "Assigned", pod_uid: str = "",
) -> dict[str, Any]:  # fmt: skip
    """An AzureAssignedIdentity exactly as MIC writes one (name, label, embedded objects)."""
    name = ident["metadata"]["name"]
    meta: dict[str, Any] = {
        "name": f"{pod}-{namespace}-{name}", "namespace": namespace,
        "labels": {"nodename": node},
    }  # fmt: skip
    if pod_uid:
        meta["annotations"] = {"aadpodidentity.k8s.io/pod-uid": pod_uid}
    return {
        "apiVersion": API, "kind": "AzureAssignedIdentity", "metadata": meta,
        "spec": {"azureIdentityRef": ident, "azureBindingRef": binding(name, name, namespace),
                 "pod": pod, "podNamespace": namespace, "nodename": node},
        "status": {"status": state, "availableReplicas": 1},
    }  # fmt: skip


def apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )  # fmt: skip


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ClusterNmi:
    """`kv-nmi` for the cluster's node; `stop()` sends SIGTERM (it removes its nat rules)."""

    def __init__(self, cluster: Cluster, ds: Devstack, state_dir: Path, port: int = 2579) -> None:
        self.cluster = cluster
        self.ds = ds
        self.dir = state_dir
        # Its own chain (named after its port): NMIs of clusters running at once on this host
        # share its nat table and would otherwise rewrite each other's rules.
        self.port = port if _free(port) else _free_port()
        self.probe_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def install_crds(self) -> None:
        """The pod-identity CRDs (idempotent): NMI watches them from its start."""
        self.cluster.kubectl("apply", "-f", str(CRDS))
        self.cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", timeout=90
        )

    def seed(self) -> None:
        """The CRDs, the world's identities and bindings, and MIC's assignments for its pods."""
        self.install_crds()
        node = self.cluster.node_name
        idents = {name: identity(self.ds, name) for name in set(WORLD_PODS.values())}
        apply(self.cluster, *idents.values(), *(binding(n, n) for n in idents))
        apply(self.cluster, *(assigned(p, idents[i], node) for p, i in WORLD_PODS.items()))
        # What MIC does through ARM: the identities are attached to the VM whose IMDS NMI asks.
        self.ds.change_identities_by_hand(IMDS_NODE, add=sorted(idents))

    def start(self, *extra: str) -> ClusterNmi:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = (self.dir / "nmi.log").open("ab")
        argv = [
            sys.executable, "-m", "podidentity.nmi",
            f"--node={self.cluster.node_name}", f"--kubeconfig={self.cluster.kubeconfig}",
            "--listen-address=0.0.0.0", f"--port={self.port}",
            f"--intercept-address={gateway(self.cluster)}", f"--iptables-chain={CHAIN}-{self.port}",
            "--iptables-interval=5", f"--probe-address=127.0.0.1:{self.probe_port}",
            "--metrics-address=", f"--imds-endpoint={self.ds.node_imds_host(IMDS_NODE)}",
            f"--authority-host={self.ds.authority_host}", f"--ca-bundle={self.ds.ca_bundle}",
            "--assignment-wait=2", "--retry-after=3", "--log-level=debug", *extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kv-nmi exited:\n{self.log_tail()}")
            try:
                reply = requests.get(f"http://127.0.0.1:{self.probe_port}/healthz", timeout=2)
                if reply.text == "Active":
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kv-nmi not active after 60 s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "nmi.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
