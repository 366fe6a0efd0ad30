"""MIC: assigning 2,000 pods' identities, an idle hour, and memory with 20,000 pods.

A world of its own: the API server alone (etcd + kube-apiserver; pods need not run, MIC only
needs them bound to nodes) with Node objects for 20 VMs and 5 scale sets of 4 instances (40
nodes, 25 ARM resources), and the devstack's Resource Manager; 10 user-assigned identities, one
AzureIdentity + AzureIdentityBinding each, and 2,000 pods labelled over the 10 selectors,
spread over the 40 nodes (so every VM and scale set needs every identity).

- ours: `python -m podidentity.mic` as a process (the real composition root), started once the
  pods exist (an install, an upgrade or a takeover): wall time from its start until every
  AzureAssignedIdentity is Assigned;
- baseline, same run, same pods, a fresh devstack: a naive recompute-everything loop in the
  style of upstream MIC (every cycle lists every kind, recomputes every pod, creates what is
  missing 20 at a time, reads each VM or scale set it changes, PATCHes it, patches statuses),
  using the same ARM layer;
- an idle hour: ours gets 60 forced resyncs (SIGHUP, one a minute; its default is one an hour);
  the baseline gets upstream's hour, 6 full cycles (the 10-minute informer resync) and 20
  identity-assignment reconciles (every 3 minutes, a GET of each VM and scale set);
- pods arriving: 2,000 more labelled pods (another namespace, 10 other identities) created as
  fast as the benchmark can while MIC runs; the baseline runs its cycles back to back meanwhile
  (upstream runs one per event batch);
- RSS of the MIC process once 16,000 more (unlabelled) pods exist: 20,000 pods in the cluster.

API requests are the API server's own count (`apiserver_request_total`, resource requests),
minus the benchmark's own; ARM requests are the devstack's count for the subscription. Lease
renewals (one PUT every 3.75 s while leading) are left out of "API writes" and said so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.config.kubeconfig import SingleConfig
from lightkube.types import PatchType

from bench.common import Context, Row
from devstack.client import Devstack
from devstack.cluster.apiserver import ApiServer
from devstack.harness.mic import (
    RG,
    MicWorld,
    install,
    mic_credential,
    register_nodes,
    start_devstack,
)
from kube.cache import WatchCache
from kube.client import load_config, make_client
from kube.resources import Node, Pod
from podidentity.crds import (
    AzureAssignedIdentity,
    AzureIdentity,
    AzureIdentityBinding,
    AzurePodIdentityException,
)
from podidentity.crds.resources import (
    AzureAssignedIdentityResource,
    AzureIdentityBindingResource,
    AzureIdentityResource,
    AzurePodIdentityExceptionResource,
)
from podidentity.mic.arm import Arm
from podidentity.mic.model import Target, assigned_body, project_node, project_pod, wants_for

NAME = "mic"
TITLE = "MIC: 2,000 pods over 10 identities on 20 VMs + 5 scale sets, idle hour, RSS"
NS = "bench"
IDENTITIES = 10
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


# -- the API server's own request count ----------------------------------------------------------

_METRIC = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")


def api_requests(api: ApiServer) -> dict[tuple[str, str], float]:
    """(verb, resource) -> requests so far, as the API server counts them."""
    text = api.kubectl("get", "--raw", "/metrics").stdout
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        found = _METRIC.match(line)
        if not found:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        if not labels.get("resource"):
            continue
        key = (labels.get("verb", ""), labels["resource"])
        counts[key] = counts.get(key, 0.0) + float(found.group(2))
    return counts


def delta(after: dict[tuple[str, str], float], before: dict[tuple[str, str], float],
          writes_only: bool = False, leases: bool = True) -> int:  # fmt: skip
    total = 0.0
    for key, value in after.items():
        verb, resource = key
        if writes_only and verb not in WRITE_VERBS:
            continue
        if not leases and resource == "leases":
            continue
        total += value - before.get(key, 0.0)
    return round(total)


# -- the world ----------------------------------------------------------------------------------


ARRIVE = "arrive"


def populate(client: Client, ds: Devstack, ns: str, first: int) -> None:
    """Identities id-<first>..id-<first+9> with a binding each (selectors sel-0..sel-9) in ns."""
    world = MicWorld(api=None, ds=ds, config=None, client=client)  # type: ignore[arg-type]
    for n in range(IDENTITIES):
        world.identity(ns, f"ident-{n}", f"id-{first + n}")
        world.binding(ns, f"bind-{n}", f"ident-{n}", f"sel-{n}")


def create_pods(
    client: Client, count: int, nodes: list[str], labelled: bool, start: int = 0, ns: str = NS
) -> None:
    def one(i: int) -> None:
        labels = {"aadpodidbinding": f"sel-{i % IDENTITIES}"} if labelled else {"app": "other"}
        client.create(Pod({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:05d}", "namespace": ns, "labels": labels},
            "spec": {"nodeName": nodes[(i // IDENTITIES) % len(nodes)],
                     "containers": [{"name": "c", "image": "busybox"}]},
        }))  # fmt: skip

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(start, start + count)))


def assigned_counter(config: SingleConfig) -> WatchCache[bool]:
    return WatchCache[bool](
        config, AzureAssignedIdentityResource,
        lambda raw: (raw.get("status") or {}).get("status") == "Assigned", name="bench-assigned",
    ).start()  # fmt: skip


def wait_assigned(cache: WatchCache[bool], expected: int, timeout: float) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while sum(1 for v in cache.items() if v) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sum(1 for v in cache.items() if v)}/{expected} Assigned")
        time.sleep(0.05)
    return time.perf_counter() - started


def wipe(client: Client) -> None:
    """Remove the baseline's objects and the arriving pods, so ours starts where it did."""
    for ns in (NS, ARRIVE):
        for obj in list(client.list(AzureAssignedIdentityResource, namespace=ns)):
            if obj["metadata"].get("finalizers"):
                client.patch(AzureAssignedIdentityResource, obj["metadata"]["name"],
                             {"metadata": {"finalizers": None}}, namespace=ns,
                             patch_type=PatchType.MERGE)  # fmt: skip
        client.deletecollection(AzureAssignedIdentityResource, namespace=ns)
    client.deletecollection(Pod, namespace=ARRIVE, grace_period=0)
    deadline = time.monotonic() + 120
    while list(client.list(Pod, namespace=ARRIVE)) and time.monotonic() < deadline:
        time.sleep(0.5)


def arrive(client: Client, counter: WatchCache[bool], pods: int, nodes: list[str]) -> float:
    """Create `pods` labelled pods in ARRIVE as fast as we can; seconds until all Assigned."""
    t0 = time.perf_counter()
    create_pods(client, pods, nodes, labelled=True, ns=ARRIVE)
    wait_assigned(counter, 2 * pods, 900)
    return time.perf_counter() - t0


# -- the baseline: recompute everything every cycle ------------------------------------------


class NaiveMic:
    """Upstream MIC's cycle, written plainly: list all, recompute all, act, repeat."""

    def __init__(self, client: Client, arm: Arm) -> None:
        self.client = client
        self.arm = arm

    def cycle(self) -> int:
        c = self.client
        pods = [p for p in (project_pod(dict(o)) for o in c.list(Pod, namespace="*")) if p]
        nodes = {n.name: n for n in (project_node(dict(o)) for o in c.list(Node))}
        identities = {
            (i.meta.namespace, i.meta.name): i
            for i in (
                AzureIdentity.parse(dict(o)) for o in c.list(AzureIdentityResource, namespace="*")
            )
        }
        bindings = [
            AzureIdentityBinding.parse(dict(o))
            for o in c.list(AzureIdentityBindingResource, namespace="*")
        ]
        exceptions = [
            AzurePodIdentityException.parse(dict(o))
            for o in c.list(AzurePodIdentityExceptionResource, namespace="*")
        ]
        current = {o["metadata"]["name"]: AzureAssignedIdentity.parse(dict(o))
                   for o in c.list(AzureAssignedIdentityResource, namespace="*")}  # fmt: skip
        creates = []
        for pod in pods:
            matching = [b for b in bindings if b.selector == pod.selector]
            wants, _ = wants_for(pod, nodes.get(pod.node), matching, identities, exceptions, True)
            creates += [w for w in wants if w.name not in current]
        if not creates:
            time.sleep(0.2)  # upstream waits for the next event; here, a short nap
            return 0
        with ThreadPoolExecutor(20) as pool:  # upstream's --createDeleteBatch
            list(pool.map(lambda w: c.create(AzureAssignedIdentityResource(
                assigned_body(w, "Created", "x/finalizer", "x/pod-uid", "nodename")
                | {"metadata": {"name": w.name, "namespace": w.namespace,
                                "labels": {"nodename": w.pod.node}}})), creates))  # fmt: skip
        by_target: dict[Target, list[Any]] = {}
        for w in creates:
            assert w.target is not None
            by_target.setdefault(w.target, []).append(w)

        def per_target(item: tuple[Target, list[Any]]) -> None:
            target, wants = item
            state = self.arm.get(target)
            self.arm.update(target, state, {w.resource_id for w in wants}, set())
            for w in wants:
                c.patch(AzureAssignedIdentityResource, w.name, {"status": {"status": "Assigned"}},
                        namespace=w.namespace, patch_type=PatchType.MERGE)  # fmt: skip

        with ThreadPoolExecutor(len(by_target) or 1) as pool:  # upstream: a goroutine each
            list(pool.map(per_target, by_target.items()))
        return len(creates)

    def reconcile_assignments(self, targets: list[Target]) -> None:
        """Upstream's 3-minute pass: read every VM and scale set holding assigned identities."""
        for target in targets:
            self.arm.get(target)


# -- runs --------------------------------------------------------------------------------------


def node_targets(ds: Devstack) -> list[Target]:
    seen = {project_node({"metadata": {"name": n}, "spec": {"providerID": ds.provider_id(n)}}).target
            for n in ds.arm["nodes"]}  # fmt: skip
    return sorted(t for t in seen if t is not None)


def arm_count(ds: Devstack, operation: str | None = None) -> int:
    return ds.count(vault=ds.subscription_id, operation=operation)


def patches(ds: Devstack) -> int:
    return arm_count(ds, "vm.patch") + arm_count(ds, "vmss.patch")


def mic_process(work: Path, api: ApiServer, ds: Devstack) -> tuple[subprocess.Popen[bytes], Path]:
    azure = work / "azure.json"
    azure.write_text(json.dumps({
        "cloud": "AzurePublicCloud", "tenantId": ds.tenant_id,
        "subscriptionId": ds.subscription_id, "resourceGroup": RG,
        "aadClientId": ds.client_id("mic"), "aadClientSecret": ds.client_secret("mic"),
    }))  # fmt: skip
    azure.chmod(0o600)
    log = work / "mic.log"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    process = subprocess.Popen(
        [sys.executable, "-m", "podidentity.mic", f"--kubeconfig={api.kubeconfig}",
         f"--cloud-config={azure}", f"--arm-endpoint={ds.arm_endpoint}",
         f"--authority-host={ds.authority_host}", f"--ca-bundle={ds.ca_bundle}",
         "--leader-election-namespace=default", "--probe-addr=", "--log-level=info"],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"), env=env,  # noqa: SIM115
    )  # fmt: skip
    return process, log


def cycles_logged(log: Path) -> int:
    return len(re.findall(r"cycle \d+:", log.read_text(errors="replace")))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(ctx: Context) -> list[Row]:
    pods = 200 if ctx.quick else 2000
    more = 1600 if ctx.quick else 16000  # 2 x pods labelled + more = 20,000 pods
    resyncs = 6 if ctx.quick else 60
    work = ctx.work / "mic"
    api = ApiServer(work / "api").up()
    try:
        return _run(ctx, work, api, pods, more, resyncs)
    finally:
        api.down()


def _run(ctx: Context, work: Path, api: ApiServer, pods: int, more: int, resyncs: int) -> list[Row]:
    install(api)
    config = load_config(api.kubeconfig)
    client = make_client(config, timeout=120.0)
    api.kubectl("create", "namespace", NS)
    shape = {"vms": 20, "scale_sets": 5, "instances": 4, "identities": 2 * IDENTITIES}
    api.kubectl("create", "namespace", ARRIVE)

    # Baseline first, on its own devstack.
    ds = start_devstack(work / "ds-naive", **shape)
    try:
        nodes = register_nodes(client, ds)
        populate(client, ds, NS, 0)
        populate(client, ds, ARRIVE, IDENTITIES)
        create_pods(client, pods, nodes, labelled=True)
        targets = node_targets(ds)
        counter = assigned_counter(config)
        naive = NaiveMic(make_client(config, timeout=120.0),
                         Arm(mic_credential(ds), ds.arm_endpoint, ca_bundle=ds.ca_bundle))  # fmt: skip
        ds.reset_counters()
        before = api_requests(api)
        t0 = time.perf_counter()
        while naive.cycle():
            pass
        wait_assigned(counter, pods, 600)
        naive_wall = time.perf_counter() - t0
        naive_api = delta(api_requests(api), before)
        naive_arm, naive_patches = arm_count(ds), patches(ds)
        # The idle hour, upstream's way.
        ds.reset_counters()
        before = api_requests(api)
        for _ in range(6):
            naive.cycle()
        for _ in range(20):
            naive.reconcile_assignments(targets)
        after = api_requests(api)
        naive_idle_arm = arm_count(ds)
        naive_idle_api = delta(after, before)
        naive_idle_writes = delta(after, before, writes_only=True)
        # Pods arriving while it runs: a cycle after another, as events keep coming.
        ds.reset_counters()
        before = api_requests(api)
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                naive.cycle()

        runner = threading.Thread(target=loop, daemon=True)
        runner.start()
        naive_arrive = arrive(client, counter, pods, nodes)
        stop.set()
        runner.join(120)
        naive_arrive_api = delta(api_requests(api), before)
        naive_arrive_arm, naive_arrive_patches = arm_count(ds), patches(ds)
        counter.stop(interrupt=False)
        wipe(client)
    finally:
        ds.stop()

    # Ours, on a fresh devstack (nothing attached yet).
    ds = start_devstack(work / "ds-ours", **shape)
    process: subprocess.Popen[bytes] | None = None
    try:
        counter = assigned_counter(config)
        counter.wait_synced(60)
        ds.reset_counters()
        before = api_requests(api)
        t0 = time.perf_counter()
        process, log = mic_process(work, api, ds)
        wait_assigned(counter, pods, 600)
        ours_wall = time.perf_counter() - t0
        deadline = time.monotonic() + 30
        while cycles_logged(log) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # let the cycles that only see our own echoes finish
        ours_api = delta(api_requests(api), before)
        ours_arm, ours_patches = arm_count(ds), patches(ds)

        ds.reset_counters()
        before = api_requests(api)
        for _ in range(resyncs):
            seen = cycles_logged(log)
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while cycles_logged(log) <= seen and time.monotonic() < deadline:
                time.sleep(0.02)
        after = api_requests(api)
        idle_writes = delta(after, before, writes_only=True, leases=False)
        idle_lease = delta(after, before, writes_only=True) - idle_writes
        idle_api = delta(after, before, leases=False)

        idle_arm = arm_count(ds)
        ds.reset_counters()
        before = api_requests(api)
        ours_arrive = arrive(client, counter, pods, nodes)
        time.sleep(2.0)
        ours_arrive_api = delta(api_requests(api), before, leases=False)
        ours_arrive_arm, ours_arrive_patches = arm_count(ds), patches(ds)

        create_pods(client, more, nodes, labelled=False, start=pods)
        process.send_signal(signal.SIGHUP)
        time.sleep(5.0)
        rss = rss_mib(process.pid)
        counter.stop(interrupt=False)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        ds.stop()

    resources = len(targets)
    note = f"{pods} pods, {IDENTITIES} identities, {resources} VMs/scale sets; cmd: python -m bench --only mic"
    return [
        Row("MIC: every AzureAssignedIdentity Assigned, wall time", ours_wall, "s",
            baseline=naive_wall, baseline_label="naive recompute-everything loop",
            target=("<=", 60.0), note=note),
        Row("MIC: API requests to get there", ours_api, "req", baseline=naive_api,
            baseline_label="naive", note="API server's count, resource requests, incl. lists and watches"),
        Row("MIC: ARM requests to get there", ours_arm, "req", baseline=naive_arm,
            baseline_label="naive", note="GET, PATCH and LRO polls on the subscription"),
        Row("MIC: ARM PATCHes per VM or scale set", ours_patches / resources, "PATCH",
            baseline=naive_patches / resources, baseline_label="naive", target=("<=", 2.0)),
        Row(f"MIC: idle hour ({resyncs} forced resyncs), ARM requests", idle_arm, "req",
            baseline=naive_idle_arm, baseline_label="naive: 6 cycles + 20 reconciles",
            target=("<=", 0.0)),
        Row(f"MIC: idle hour ({resyncs} forced resyncs), API writes", idle_writes, "req",
            baseline=naive_idle_writes, baseline_label="naive: 6 cycles", target=("<=", 0.0),
            note=f"Lease renewals left out ({idle_lease} in the window)"),
        Row(f"MIC: idle hour ({resyncs} forced resyncs), API requests", idle_api, "req",
            baseline=naive_idle_api, baseline_label="naive: 6 cycles (lists)",
            note="Lease requests left out; watches stay open"),
        Row(f"MIC: {pods} more pods arriving while it runs, until all Assigned", ours_arrive,
            "s", baseline=naive_arrive, baseline_label="naive, a cycle after another"),
        Row("MIC: API requests while they arrive", ours_arrive_api, "req",
            baseline=naive_arrive_api, baseline_label="naive",
            note="the pods' own creation included in both"),
        Row("MIC: ARM requests while they arrive", ours_arrive_arm, "req",
            baseline=naive_arrive_arm, baseline_label="naive"),
        Row("MIC: ARM PATCHes per VM or scale set while they arrive",
            ours_arrive_patches / resources, "PATCH",
            baseline=naive_arrive_patches / resources, baseline_label="naive"),
        Row(f"MIC: RSS with {2 * pods + more} pods in the cluster ({2 * pods} labelled)", rss, "MiB",
            target=("<=", 250.0)),
    ]  # fmt: skip
