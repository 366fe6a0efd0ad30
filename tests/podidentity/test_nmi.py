"""NMI against a real API server and the devstack's IMDS and Entra ID: wire compatibility, who
is calling, identity choice, tokens, and every "better than upstream" rule.

Pods are API objects bound to a node without a kubelet; the test gives them addresses in
127.0.0.0/8 and calls NMI from those addresses, which is what interception makes pods do.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
import requests

from devstack.client import Devstack
from devstack.cluster.apiserver import ApiServer
from kube.client import load_config
from podidentity.nmi.app import Nmi, build
from podidentity.nmi.config import Settings
from podidentity.nmi.identities import Pending, PodRef, Wanted
from tests.podidentity.test_crds import DEPLOYED

NODE = "nmi-node"
IMDS_NODE = "devstack-node-0"  # vm-user is attached to it; pod-identity is on no VM
RESOURCE = "https://vault.azure.net"
_ips = iter(range(2, 250))


@pytest.fixture(scope="module")
def api(apiserver: ApiServer) -> ApiServer:
    apiserver.kubectl("apply", "-f", str(DEPLOYED))
    apiserver.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    return apiserver


class World:
    """One namespace of pods and identities, and an NMI over them."""

    def __init__(self, api: ApiServer, devstack: Devstack, ns: str) -> None:
        self.api, self.devstack, self.ns = api, devstack, ns
        self.nmis: list[Nmi] = []
        # Straight to the API (kubectl costs a process start per call).
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.cert = (str(api.lay.pki / "admin.crt"), str(api.lay.pki / "admin.key"))
        self.http.verify = str(api.lay.pki / "ca.crt")
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def _url(self, obj: dict[str, Any]) -> str:
        group, _, version = obj["apiVersion"].rpartition("/")
        base = f"{self.api.server}/apis/{group}/{version}" if group else f"{self.api.server}/api/v1"
        plural = {
            "Pod": "pods", "Secret": "secrets", "Namespace": "namespaces",
            "AzureIdentity": "azureidentities", "AzureIdentityBinding": "azureidentitybindings",
            "AzureAssignedIdentity": "azureassignedidentities",
            "AzurePodIdentityException": "azurepodidentityexceptions",
        }[obj["kind"]]  # fmt: skip
        ns = obj["metadata"].get("namespace")
        return f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"

    def apply(self, *objects: dict[str, Any]) -> None:
        """Create, or replace what is there (keeping nothing of it but its resourceVersion)."""
        server_set = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")
        for given in objects:
            meta = {k: v for k, v in given["metadata"].items() if k not in server_set}
            obj = {**given, "metadata": meta}
            url = self._url(obj)
            reply = self.http.post(url, json=obj, timeout=30)
            if reply.status_code == 409:
                name = obj["metadata"]["name"]
                current = self.http.get(f"{url}/{name}", timeout=30).json()
                body = {**obj, "metadata": {**obj["metadata"],
                        "resourceVersion": current["metadata"]["resourceVersion"]}}  # fmt: skip
                reply = self.http.put(f"{url}/{name}", json=body, timeout=30)
            assert reply.status_code in (200, 201), reply.text

    def patch(self, obj: dict[str, Any], patch: Any, kind: str, sub: str = "") -> dict[str, Any]:
        url = f"{self._url(obj)}/{obj['metadata']['name']}{sub}"
        reply = self.http.patch(url, data=json.dumps(patch), timeout=30,
                                headers={"Content-Type": kind})  # fmt: skip
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def pod(
        self, name: str, label: str | None = "web", *, host_network: bool = False,
        ns: str | None = None, phase: str = "Running", ip: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        ns = ns or self.ns
        ip = ip or f"127.0.{next(_ips)}.{next(_ips)}"
        labels = {"aadpodidbinding": label} if label else {}
        obj = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": NODE, "hostNetwork": host_network,
                     "containers": [{"name": "c", "image": "busybox"}]},
        }  # fmt: skip
        self.apply(obj)
        raw = self.patch(obj, {"status": {"podIP": ip, "phase": phase}},
                         "application/merge-patch+json", "/status")  # fmt: skip
        return {"ip": ip, "uid": raw["metadata"]["uid"], "name": name, "ns": ns}

    def identity(
        self, name: str, identity: str = "vm-user", ns: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        spec = {"type": 0, "clientID": self.devstack.client_id(identity),
                "resourceID": self.devstack.resource_id(identity)} if identity else {}  # fmt: skip
        spec.update(extra)
        obj = {
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
            "metadata": {"name": name, "namespace": ns or self.ns}, "spec": spec,
        }  # fmt: skip
        self.apply(obj)
        return obj

    def binding(
        self, name: str, identity: str, selector: str = "web", ns: str | None = None
    ) -> dict[str, Any]:
        obj = {
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentityBinding",
            "metadata": {"name": name, "namespace": ns or self.ns},
            "spec": {"azureIdentity": identity, "selector": selector},
        }  # fmt: skip
        self.apply(obj)
        return obj

    def assign(
        self, pod: dict[str, Any], identity: dict[str, Any], *, state: str = "Assigned",
        uid: str | None = None, binding_ns: str | None = None,
    ) -> str:  # fmt: skip
        """An AzureAssignedIdentity as MIC writes it (until our MIC exists)."""
        id_name = identity["metadata"]["name"]
        name = f"{pod['name']}-{pod['ns']}-{id_name}"
        annotations = {"aadpodidentity.k8s.io/pod-uid": uid if uid is not None else pod["uid"]}
        binding = {
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentityBinding",
            "metadata": {"name": f"{id_name}-binding",
                         "namespace": binding_ns or identity["metadata"]["namespace"]},
            "spec": {"azureIdentity": id_name, "selector": "web"},
        }  # fmt: skip
        self.apply({
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureAssignedIdentity",
            "metadata": {"name": name, "namespace": pod["ns"], "labels": {"nodename": NODE},
                         "annotations": annotations},
            "spec": {"azureIdentityRef": identity, "azureBindingRef": binding,
                     "pod": pod["name"], "podNamespace": pod["ns"], "nodename": NODE},
            "status": {"status": state, "availableReplicas": 1},
        })  # fmt: skip
        return name

    def set_state(self, name: str, state: str) -> None:
        ref = {"apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureAssignedIdentity",
               "metadata": {"name": name, "namespace": self.ns}}  # fmt: skip
        self.patch(ref, [{"op": "replace", "path": "/status/status", "value": state}],
                   "application/json-patch+json")  # fmt: skip

    def nmi(self, **overrides: Any) -> Nmi:
        settings = Settings(
            node=NODE, port=0, iptables=False, probe_address="", metrics_address="",
            imds_endpoint=self.devstack.node_imds_host(IMDS_NODE),
            authority_host=self.devstack.authority_host, ca_bundle=self.devstack.ca_bundle,
            assignment_wait=1.0, retry_after=2,
        )  # fmt: skip
        nmi = build(replace(settings, **overrides), load_config(self.api.kubeconfig))
        self.nmis.append(nmi)
        return nmi

    def wait_for(self, nmi: Nmi, assigned: int = 0, pods: int = 0) -> None:
        import time

        deadline = time.monotonic() + 30
        cache = nmi.identities.assigned
        while time.monotonic() < deadline:
            if (cache is None or len(cache) >= assigned) and len(nmi.pods.cache) >= pods:
                return
            time.sleep(0.05)
        raise AssertionError("NMI's caches did not catch up")


@pytest.fixture
def world(api: ApiServer, devstack: Devstack, request: pytest.FixtureRequest) -> Iterator[World]:
    ns = request.node.name.replace("_", "-").lower()[:40].rstrip("-")
    w = World(api, devstack, ns)
    try:
        yield w
    finally:
        for nmi in w.nmis:
            nmi.stop()
        api.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force", check=False)


def host_token(nmi: Nmi, ns: str, name: str, **query: str) -> requests.Response:
    query.setdefault("resource", RESOURCE)
    return requests.get(
        f"http://127.0.0.1:{nmi.port}/host/token/", params=query,
        headers={"podns": ns, "podname": name}, timeout=30,
    )  # fmt: skip


def from_pod(
    nmi: Nmi, ip: str, path: str = "/metadata/identity/oauth2/token", *,
    metadata: bool = True, **query: str,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """A request as an intercepted pod makes it: from the pod's address."""
    if "resource" not in query and "identity" in path:
        query["resource"] = RESOURCE
    conn = http.client.HTTPConnection("127.0.0.1", nmi.port, timeout=30, source_address=(ip, 0))
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    conn.request(
        "GET", path + ("?" + qs if qs else ""), headers={"Metadata": "true"} if metadata else {}
    )
    reply = conn.getresponse()
    body = reply.read()
    conn.close()
    return reply.status, {k.lower(): v for k, v in reply.getheaders()}, body


def imds_calls(devstack: Devstack) -> int:
    return sum(int(c["count"]) for c in devstack.counters() if "imds" in str(c.get("operation")))


# -- wire compatibility -----------------------------------------------------------------------


def test_host_token_answers_the_driver_shape_with_numbers_as_strings(world: World) -> None:
    pod = world.pod("app-0")
    identity = world.identity("id-a")
    world.assign(pod, identity)
    nmi = world.nmi()
    world.wait_for(nmi, assigned=1, pods=1)
    reply = host_token(nmi, world.ns, "app-0")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["clientid"] == world.devstack.client_id("vm-user")
    token = body["token"]
    assert set(token) == {"access_token", "refresh_token", "expires_in", "expires_on",
                          "not_before", "resource", "token_type"}  # fmt: skip
    assert all(isinstance(v, str) for v in token.values())
    assert int(token["expires_on"]) > int(token["not_before"]) and token["token_type"] == "Bearer"
    assert token["resource"] == RESOURCE and token["access_token"].count(".") == 2

    missing = requests.get(f"http://127.0.0.1:{nmi.port}/host/token/?resource=x", timeout=10)
    assert missing.status_code == 400
    assert missing.text == "missing 'podname' and 'podns' from request header\n"
    empty = host_token(nmi, world.ns, "app-0", resource="")
    assert (empty.status_code, empty.text) == (400, "parameter resource cannot be empty\n")


def test_pod_requests_get_imds_semantics(world: World) -> None:
    pod = world.pod("app-0")
    world.assign(pod, world.identity("id-a"))
    nmi = world.nmi()
    world.wait_for(nmi, assigned=1, pods=1)
    status, headers, body = from_pod(nmi, pod["ip"])
    assert status == 200 and headers["content-type"] == "application/json"
    token = json.loads(body)
    assert token["resource"] == RESOURCE and isinstance(token["expires_in"], str)

    status, headers, body = from_pod(nmi, pod["ip"], metadata=False)
    assert status == 400 and headers["content-type"] == "application/json; charset=utf-8"
    assert body == (b'{"error":"invalid_request","error_description":'
                    b'"Required metadata header not specified"}\n')  # fmt: skip
    # "metadata" is case-insensitive; other spellings never reach IMDS.
    assert from_pod(nmi, pod["ip"], "/METADATA/identity/oauth2/token")[0] == 200
    status, _, body = from_pod(nmi, pod["ip"], "/metadata/identity\\oauth2\\token")
    assert (status, body) == (400, b"Invalid request\n")
    # Missing resource; a client_id that is not the pod's.
    assert from_pod(nmi, pod["ip"], resource="")[0] == 400
    status, _, body = from_pod(nmi, pod["ip"], client_id=world.devstack.client_id("no-access"))
    assert status == 404 and b"not among its identities" in body
    # msi_res_id / mi_res_id name the identity too (compared case-insensitively).
    rid = world.devstack.resource_id("vm-user")
    assert from_pod(nmi, pod["ip"], mi_res_id=rid.upper())[0] == 200


def test_other_paths_are_proxied_to_imds_and_instance_metadata_can_be_blocked(world: World) -> None:
    pod = world.pod("app-0")
    nmi = world.nmi()
    world.wait_for(nmi, pods=1)
    status, _, _ = from_pod(nmi, pod["ip"], "/metadata/nothing-here")
    assert status == 404  # IMDS's own answer, proxied
    assert from_pod(nmi, pod["ip"], "/metadata/nothing-here", metadata=False)[0] == 400
    blocked = world.nmi(block_instance_metadata=True)
    status, _, body = from_pod(blocked, pod["ip"], "/metadata/instance/compute")
    assert (status, body) == (403, b"Request blocked by AAD Pod Identity NMI\n")


def test_healthz_says_active_and_metrics_count_the_requests(world: World) -> None:
    pod = world.pod("app-0")
    world.assign(pod, world.identity("id-a"))
    nmi = world.nmi(probe_address="127.0.0.1:0", metrics_address="127.0.0.1:0")
    world.wait_for(nmi, assigned=1, pods=1)
    assert nmi.probe is not None and nmi.metrics is not None
    probe = requests.get(f"http://127.0.0.1:{nmi.probe.server_address[1]}/healthz", timeout=10)
    assert (probe.status_code, probe.text) == (200, "Active")
    assert host_token(nmi, world.ns, "app-0").status_code == 200
    metrics = requests.get(f"http://127.0.0.1:{nmi.metrics.server_address[1]}/metrics", timeout=10)
    line = next(
        ln for ln in metrics.text.splitlines()
        if ln.startswith("aadpodidentity_nmi_operations_duration_seconds_count")
        and 'operation_type="/host/token/"' in ln and f'namespace="{world.ns}"' in ln
    )  # fmt: skip
    assert float(line.rsplit(" ", 1)[1]) >= 1


# -- who is calling ---------------------------------------------------------------------------


def test_host_network_pods_and_unknown_addresses_never_get_a_pod_identity(world: World) -> None:
    pod = world.pod("app-0")
    world.assign(pod, world.identity("id-a"))
    host = world.pod("host-0", host_network=True, ip="127.0.0.1")
    world.assign(host, world.identity("id-h"))
    nmi = world.nmi()
    world.wait_for(nmi, assigned=2, pods=2)
    status, _, body = from_pod(nmi, "127.0.0.1")
    assert status == 403 and b"host-network" in body
    status, _, body = from_pod(nmi, "127.0.99.99")
    assert status == 404 and b"no running or pending pod" in body
    # A finished pod that had the address is not the caller either.
    done = world.pod("done-0", phase="Succeeded")
    world.assign(done, world.identity("id-d"))
    world.wait_for(nmi, assigned=3, pods=3)
    assert from_pod(nmi, done["ip"])[0] == 404


def test_an_excepted_pod_reaches_imds_as_the_node(world: World) -> None:
    pod = world.pod("mic-0", label=None)
    world.api.kubectl("label", "pod", "mic-0", "-n", world.ns, "app=mic")
    world.apply({
        "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzurePodIdentityException",
        "metadata": {"name": "mic-exception", "namespace": world.ns},
        "spec": {"podLabels": {"app": "MIC"}},
    })  # fmt: skip
    nmi = world.nmi()
    world.wait_for(nmi, pods=1)
    import time

    deadline = time.monotonic() + 30
    while not len(nmi.identities.exceptions) and time.monotonic() < deadline:
        time.sleep(0.05)
    status, _, body = from_pod(nmi, pod["ip"], resource=RESOURCE, **{"api-version": "2018-02-01"})
    assert status == 200, body
    # IMDS's own body (it names the node's system-assigned identity), not NMI's re-serialised one.
    assert json.loads(body)["client_id"] == world.devstack.client_id("vm-system")


# -- better than upstream ---------------------------------------------------------------------


def test_tokens_are_cached_per_identity_and_resource_with_one_fetch_in_flight(
    world: World,
) -> None:
    pod = world.pod("app-0")
    other = world.pod("app-1")
    world.assign(pod, world.identity("id-a"))
    world.assign(other, world.identity("id-b"))  # same Azure identity, another object
    nmi = world.nmi()
    world.wait_for(nmi, assigned=2, pods=2)
    before = imds_calls(world.devstack)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: host_token(nmi, world.ns, "app-0"), range(16)))
    assert {r.status_code for r in replies} == {200}
    assert len({r.json()["token"]["access_token"] for r in replies}) == 1
    assert imds_calls(world.devstack) - before == 1
    host_token(nmi, world.ns, "app-1")
    assert imds_calls(world.devstack) - before == 2  # never shared across identities
    host_token(nmi, world.ns, "app-0", resource="https://management.azure.com")
    assert imds_calls(world.devstack) - before == 3  # nor across resources

    uncached = world.nmi(token_cache=False)
    world.wait_for(uncached, assigned=2, pods=2)
    before = imds_calls(world.devstack)
    for _ in range(3):
        assert host_token(uncached, world.ns, "app-0").status_code == 200
    assert imds_calls(world.devstack) - before == 3  # upstream's behaviour, as the baseline


def test_identities_in_another_namespace_apply_only_when_cluster_wide_is_asked(
    world: World,
) -> None:
    world.api.kubectl("create", "namespace", world.ns + "-other")
    pod = world.pod("app-0")
    foreign = world.identity("id-foreign", ns=world.ns + "-other")
    world.assign(pod, foreign)
    nmi = world.nmi()
    world.wait_for(nmi, assigned=1, pods=1)
    reply = host_token(nmi, world.ns, "app-0")
    assert reply.status_code == 503  # nothing usable in its own namespace: still waiting for MIC
    wide = world.nmi(cluster_wide=True)
    world.wait_for(wide, assigned=1, pods=1)
    assert host_token(wide, world.ns, "app-0").status_code == 200
    # Upstream's per-identity opt-in still narrows the cluster-wide mode.
    world.api.kubectl(
        "annotate", "azureidentity", "id-foreign", "-n", world.ns + "-other",
        "aadpodidentity.k8s.io/Behavior=namespaced",
    )  # fmt: skip
    world.api.kubectl(
        "annotate", "azureassignedidentity", "--all", "-n", world.ns, "--overwrite", "touched=1"
    )
    entry = json.loads(
        world.api.kubectl("get", "azureassignedidentity", "-n", world.ns, "-o", "json").stdout
    )["items"][0]
    entry["spec"]["azureIdentityRef"]["metadata"]["annotations"] = {
        "aadpodidentity.k8s.io/Behavior": "namespaced"
    }
    world.apply(entry)  # MIC re-embeds the changed identity
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and host_token(wide, world.ns, "app-0").status_code == 200:
        wide.tokens.enabled = True
        time.sleep(0.1)
    assert host_token(wide, world.ns, "app-0").status_code == 503


def test_a_recreated_pod_never_sees_its_predecessors_assignment(world: World) -> None:
    pod = world.pod("db-0")
    world.assign(pod, world.identity("id-a"), uid="uid-of-the-pod-before")
    nmi = world.nmi()
    world.wait_for(nmi, assigned=1, pods=1)
    status, headers, _body = from_pod(nmi, pod["ip"])
    assert status == 503 and headers["retry-after"] == "2"
    world.assign(pod, world.identity("id-a"))  # MIC rewrites it for the new pod
    world.wait_for(nmi, assigned=1)
    import time

    deadline = time.monotonic() + 30
    while from_pod(nmi, pod["ip"])[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert from_pod(nmi, pod["ip"])[0] == 200


def test_while_mic_assigns_the_answer_is_503_with_retry_after_then_the_token(
    world: World,
) -> None:
    pod = world.pod("app-0")
    name = world.assign(pod, world.identity("id-a"), state="Created")
    nmi = world.nmi(assignment_wait=0.5)
    world.wait_for(nmi, assigned=1, pods=1)
    status, headers, body = from_pod(nmi, pod["ip"])
    assert status == 503 and headers["retry-after"] == "2"
    assert json.loads(body)["error_description"].startswith("the identity of pod")
    reply = host_token(nmi, world.ns, "app-0")
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "2"
    # A request that is waiting gets the token as soon as MIC marks it Assigned.
    waiting = world.nmi(assignment_wait=60)
    world.wait_for(waiting, assigned=1, pods=1)
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(s=from_pod(waiting, pod["ip"])[0]))
    thread.start()
    world.set_state(name, "Assigned")
    thread.join(60)
    assert result["s"] == 200


def test_the_wait_ends_when_the_client_goes_away(world: World) -> None:
    pod = world.pod("app-0")
    world.assign(pod, world.identity("id-a"), state="Created")
    nmi = world.nmi(assignment_wait=3600)
    world.wait_for(nmi, assigned=1, pods=1)
    ref = PodRef(world.ns, "app-0", pod["uid"], {"aadpodidbinding": "web"})
    with pytest.raises(Pending):
        nmi.identities.resolve(ref, Wanted(), wait=3600, retry_after=2, gone=lambda: True)


def test_with_several_identities_and_none_named_the_first_by_name_wins(world: World) -> None:
    pod = world.pod("app-0")
    world.assign(pod, world.identity("zz-system", identity="no-access"))
    world.assign(pod, world.identity("aa-user", identity="vm-user"))
    nmi = world.nmi()
    world.wait_for(nmi, assigned=2, pods=1)
    ids = {host_token(nmi, world.ns, "app-0").json()["clientid"] for _ in range(5)}
    assert ids == {world.devstack.client_id("vm-user")}
    named = host_token(nmi, world.ns, "app-0", client_id=world.devstack.client_id("no-access"))
    assert named.json()["clientid"] == world.devstack.client_id("no-access")


# -- tokens from Entra ID, managed mode -------------------------------------------------------


def test_service_principal_identities_get_tokens_from_entra_id(world: World) -> None:
    secret = base64.b64encode(world.devstack.client_secret("kvcreds").encode()).decode()
    world.apply({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "sp", "namespace": world.ns},
                 "data": {"clientSecret": secret}})  # fmt: skip
    pod = world.pod("app-0")
    sp = world.identity(
        "id-sp", identity="", type=1, clientID=world.devstack.client_id("kvcreds"),
        tenantID=world.devstack.tenant_id,
        clientPassword={"name": "sp", "namespace": world.ns},
    )  # fmt: skip
    world.assign(pod, sp)
    nmi = world.nmi()
    world.wait_for(nmi, assigned=1, pods=1)
    reply = host_token(nmi, world.ns, "app-0")
    assert reply.status_code == 200, reply.text
    assert reply.json()["clientid"] == world.devstack.client_id("kvcreds")
    assert world.devstack.client_secret("kvcreds") not in reply.text

    world.apply({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "sp", "namespace": world.ns},
                 "data": {"clientSecret": base64.b64encode(b"not-it-7f3a").decode()}})  # fmt: skip
    nmi.tokens.enabled = False
    import time

    deadline = time.monotonic() + 30
    while (wrong := host_token(nmi, world.ns, "app-0")).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert wrong.status_code == 403 and "AADSTS7000215" in wrong.text
    assert "not-it-7f3a" not in wrong.text


def test_managed_mode_reads_bindings_in_the_pods_namespace(world: World) -> None:
    pod = world.pod("app-0")
    world.identity("id-a")
    world.binding("bind-a", "id-a")
    nmi = world.nmi(operation_mode="managed")
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = from_pod(nmi, pod["ip"])[0]
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200
    unlabelled = world.pod("plain-0", label=None)
    deadline = time.monotonic() + 30
    while len(nmi.pods.cache) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    status, _, body = from_pod(nmi, unlabelled["ip"])
    assert status == 404 and b"no aadpodidbinding label" in body
