"""NMI: cached-token latency at 200 requests/s, first-token overhead, and memory at scale.

Everything against a real API server (etcd + kube-apiserver, `devstack.cluster.apiserver`) and
the devstack's IMDS, with NMI as a subprocess (`python -m podidentity.nmi`, nat rules off):

- latency: an open-loop load of 200 requests/s (each on a kept-alive connection, paced by the
  clock, not by the answers) for `/host/token/` and for the IMDS path a pod's intercepted request
  takes (`/metadata/identity/oauth2/token` sent from the pod's own address; the DNAT itself is
  kernel work outside NMI), p50 and p99; baseline: the same load against an NMI started with
  `--token-cache=false`, which fetches from IMDS on every request like upstream;
- first token for a pod (its identity not cached yet), minus one IMDS round trip measured
  directly in the same run (median of both);
- NMI's VmRSS with 5,000 pods in the cluster, 250 of them (and 250 AzureAssignedIdentities) on
  its node; the pods are bound to nodes without kubelets, so they stay Pending (NMI still sees
  them: Pending pods can call). Baseline: the RSS of an idle Python that imported NMI's modules.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.common import Context, Row, median
from devstack.cluster import missing
from devstack.cluster.apiserver import ApiServer
from devstack.cluster.nmi import CRDS
from kube.client import load_config, make_client
from kube.resources import Pod

NAME = "nmi"
TITLE = "NMI: cached token p50/p99 at 200 req/s, first-token overhead, RSS at 5,000 pods"
NODE = "bench-node"
NS = "bench"
IMDS_NODE = "devstack-node-0"
RESOURCE = "https://vault.azure.net"
RATE = 200.0


def _ip(i: int) -> str:
    return f"127.{10 + i // 250}.{i % 250 + 1}.1"


def _pod(i: int, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"p{i}", "namespace": NS, "labels": {"aadpodidbinding": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }  # fmt: skip


def _identity(ctx: Context, name: str) -> dict[str, Any]:
    ds = ctx.devstack
    return {
        "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"type": 0, "clientID": ds.client_id("vm-user"),
                 "resourceID": ds.resource_id("vm-user")},
    }  # fmt: skip


def _assigned(pod: int, ident: dict[str, Any]) -> dict[str, Any]:
    name = ident["metadata"]["name"]
    return {
        "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureAssignedIdentity",
        "metadata": {"name": f"p{pod}-{NS}-{name}", "namespace": NS,
                     "labels": {"nodename": NODE}},
        "spec": {"azureIdentityRef": ident,
                 "azureBindingRef": {"apiVersion": "aadpodidentity.k8s.io/v1",
                                     "kind": "AzureIdentityBinding",
                                     "metadata": {"name": "b", "namespace": NS},
                                     "spec": {"azureIdentity": name, "selector": "web"}},
                 "pod": f"p{pod}", "podNamespace": NS, "nodename": NODE},
        "status": {"status": "Assigned"},
    }  # fmt: skip


class Populate:
    """Creates objects through the API with a few concurrent raw POSTs (fast enough for 5,000)."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        self.session = requests.Session()
        self.session.cert = (str(api.lay.pki / "admin.crt"), str(api.lay.pki / "admin.key"))
        self.session.verify = str(api.lay.pki / "ca.crt")
        self.session.trust_env = False  # else REQUESTS_CA_BUNDLE would replace `verify`

    def post(self, path: str, obj: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        url = self.api.server + path
        reply = self.session.post(url, json=obj, timeout=30)
        if reply.status_code not in (200, 201, 409):
            raise RuntimeError(f"POST {path}: {reply.status_code} {reply.text[:200]}")
        if status is not None:
            name = obj["metadata"]["name"]
            self.session.patch(
                f"{url}/{name}/status", data=json.dumps({"status": status}), timeout=30,
                headers={"Content-Type": "application/merge-patch+json"},
            ).raise_for_status()  # fmt: skip

    def pods(self, indexes: range, node: str, with_ip: bool) -> None:
        def one(i: int) -> None:
            status = {"podIP": _ip(i), "phase": "Running"} if with_ip else None
            self.post(f"/api/v1/namespaces/{NS}/pods", _pod(i, node), status)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, indexes))

    def crs(self, plural: str, objects: list[dict[str, Any]]) -> None:
        path = f"/apis/aadpodidentity.k8s.io/v1/namespaces/{NS}/{plural}"
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda o: self.post(path, o), objects))


class NmiProcess:
    def __init__(self, ctx: Context, api: ApiServer, name: str, *extra: str) -> None:
        self.dir = ctx.scratch(name)
        self.port = _free_port()
        self.probe = _free_port()
        argv = [
            sys.executable, "-m", "podidentity.nmi", f"--node={NODE}",
            f"--kubeconfig={api.kubeconfig}", f"--port={self.port}", "--iptables=false",
            f"--probe-address=127.0.0.1:{self.probe}", "--metrics-address=",
            f"--imds-endpoint={ctx.devstack.node_imds_host(IMDS_NODE)}",
            "--log-level=warning", *extra,
        ]  # fmt: skip
        self.log = (self.dir / "nmi.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.dir / "nmi.log").read_text()[-2000:])
            try:
                if (
                    requests.get(f"http://127.0.0.1:{self.probe}/healthz", timeout=2).text
                    == "Active"
                ):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("NMI did not become active")

    def rss_mib(self) -> float:
        return _rss_mib(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load(
    port: int, path: str, headers_for: Callable[[int], dict[str, str]], sources: list[str],
    seconds: float,
) -> list[float]:  # fmt: skip
    """Open-loop: request k is sent at start + k/RATE by one of a few workers, each on its own
    kept-alive connection from one source address. Returns latencies in ms."""
    total = int(RATE * seconds)
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    workers = 8

    def worker(w: int) -> None:
        source = sources[w % len(sources)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
        mine: list[float] = []
        for k in range(w, total, workers):
            due = start + k / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers_for(w))
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200:
                raise RuntimeError(f"HTTP {reply.status} from {source}: {body[:300]!r}")
            mine.append((time.perf_counter() - t0) * 1000.0)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def run(ctx: Context) -> list[Row]:
    reasons = [r for r in missing() if "etcd" in r or "apiserver" in r or "kubectl" in r]
    if reasons:
        raise RuntimeError("needs etcd and kube-apiserver: " + "; ".join(reasons))
    total_pods = 500 if ctx.quick else 5000
    on_node = 50 if ctx.quick else 250
    seconds = 2.0 if ctx.quick else 10.0
    api = ApiServer(ctx.scratch("api") / "state", watch_cache=True).up()
    nmis: list[NmiProcess] = []
    try:
        api.kubectl("apply", "-f", str(CRDS))
        api.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        api.kubectl("create", "namespace", NS)
        pop = Populate(api)
        pop.pods(range(on_node), NODE, with_ip=True)
        pop.pods(range(on_node, total_pods), "elsewhere", with_ip=False)
        shared = _identity(ctx, "shared")
        firsts = [_identity(ctx, f"first-{i}") for i in range(20)]
        pop.crs("azureidentities", [shared, *firsts])
        entries = [_assigned(i, shared) for i in range(20, on_node)]
        entries += [_assigned(i, firsts[i]) for i in range(20)]
        pop.crs("azureassignedidentities", entries)
        client = make_client(load_config(api.kubeconfig))
        assert sum(1 for _ in client.list(Pod, namespace=NS, chunk_size=500)) == total_pods

        cached = NmiProcess(ctx, api, "nmi-cached")
        nmis.append(cached)
        uncached = NmiProcess(ctx, api, "nmi-uncached", "--token-cache=false")
        nmis.append(uncached)
        sources = [_ip(i) for i in range(20, 28)]

        def host_headers(worker: int) -> dict[str, str]:
            return {"podns": NS, "podname": f"p{20 + worker}"}  # one pod per worker

        def pod_headers(worker: int) -> dict[str, str]:
            return {"Metadata": "true"}

        rows: list[Row] = []
        for label, path, headers_for, load_sources in (
            ("/host/token/", f"/host/token/?resource={RESOURCE}", host_headers, ["127.0.0.1"]),
            ("intercepted IMDS path", f"/metadata/identity/oauth2/token?resource={RESOURCE}",
             pod_headers, sources),
        ):  # fmt: skip
            load(cached.port, path, headers_for, load_sources, 0.5)  # warm the cache
            ours = load(cached.port, path, headers_for, load_sources, seconds)
            base = load(uncached.port, path, headers_for, load_sources, seconds)
            rows.append(Row(f"{label} cached, p50 at 200 req/s", _percentile(ours, 0.5), "ms",
                            _percentile(base, 0.5), "no cache (upstream)", ("<=", 1.0)))  # fmt: skip
            rows.append(Row(f"{label} cached, p99 at 200 req/s", _percentile(ours, 0.99), "ms",
                            _percentile(base, 0.99), "no cache (upstream)", ("<=", 5.0),
                            note=f"{len(ours)} requests"))  # fmt: skip

        # First token for a pod: its identity not cached yet. Against one IMDS round trip.
        imds = ctx.devstack.node_imds_host(IMDS_NODE) + "/metadata/identity/oauth2/token"
        session = requests.Session()
        direct: list[float] = []
        first: list[float] = []
        for i in range(20):
            t0 = time.perf_counter()
            session.get(imds, params={"api-version": "2018-02-01", "resource": RESOURCE,
                                      "client_id": ctx.devstack.client_id("vm-user")},
                        headers={"Metadata": "true"}, timeout=10).raise_for_status()  # fmt: skip
            direct.append((time.perf_counter() - t0) * 1000.0)
            conn = http.client.HTTPConnection(
                "127.0.0.1", cached.port, timeout=30, source_address=(_ip(i), 0)
            )
            t0 = time.perf_counter()
            conn.request(
                "GET",
                f"/metadata/identity/oauth2/token?resource={RESOURCE}",
                headers={"Metadata": "true"},
            )
            reply = conn.getresponse()
            body = reply.read()
            first.append((time.perf_counter() - t0) * 1000.0)
            conn.close()
            if reply.status != 200:
                raise RuntimeError(f"first token: HTTP {reply.status}: {body[:300]!r}")
        overhead = median(first) - median(direct)
        rows.append(Row("first token for a pod, minus one IMDS round trip", overhead, "ms",
                        median(direct), "IMDS round trip", ("<=", 5.0),
                        note=f"first token median {median(first):.2f} ms"))  # fmt: skip

        floor = subprocess.Popen(
            [sys.executable, "-c", "import podidentity.nmi.app, time; time.sleep(60)"]
        )
        time.sleep(3)
        floor_rss = _rss_mib(floor.pid)
        floor.kill()
        floor.wait()
        rows.append(Row(f"NMI RSS, {total_pods} pods in cluster, {on_node} on node", cached.rss_mib(),
                        "MiB", floor_rss, "idle interpreter with NMI imported",
                        ("<=", 100.0)))  # fmt: skip
        stdev = statistics.pstdev(direct)
        rows[-2].note += f", IMDS stdev {stdev:.2f} ms"
        return rows
    finally:
        for nmi in nmis:
            nmi.stop()
        api.down()
