"""The seed flow end to end with our NMI AND our MIC on the real cluster, nothing written by hand:
a user creates an AzureIdentity and a binding and labels a pod; our MIC assigns the identity (the
node's devstack VM gains it through ARM); our NMI serves the pod's token to the `azure/kv` volume
and to the application; deleting the pod (or the binding) makes MIC take the identity back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.client import Devstack
from devstack.cluster import Cluster
from devstack.cluster.nmi import IMDS_NODE, ClusterNmi
from devstack.cluster.nodeplugin import DaemonSetPlugin, NodePlugin
from tests.e2e import kube
from tests.e2e.conftest import NMI_DEFAULT_PORT
from tests.e2e.test_nmi import IMDS, VAULT, claims, wget
from tests.e2e.test_volumes import seed_pod

REPO = Path(__file__).resolve().parents[2]
API = "aadpodidentity.k8s.io/v1"
# The ARM identity the seed's `arm.operators` lets MIC assign; the objects' names are our own.
ARM_IDENTITY = "pod-identity"
IDENTITY = "seed-flow-reader"
BINDING = "seed-flow-binding"
SELECTOR = "seed-flow"


@pytest.fixture(scope="module")
def mic(
    cluster: Cluster, e2e_devstack: Devstack, e2e_root: Path, our_nmi: ClusterNmi
) -> Iterator[None]:
    """Our MIC as `kv-mic` runs, against the cluster and the devstack's Resource Manager."""
    ds = e2e_devstack
    # A cloud provider would set this: the node is the VM whose IMDS our NMI asks.
    node = json.loads(cluster.kubectl("get", "node", cluster.node_name, "-o", "json").stdout)
    if not node["spec"].get("providerID"):
        cluster.kubectl("patch", "node", cluster.node_name, "--type=merge",
                        "-p", json.dumps({"spec": {"providerID": ds.provider_id(IMDS_NODE)}}))  # fmt: skip
    azure = e2e_root / "seed-flow-azure.json"
    azure.write_text(json.dumps({
        "cloud": "AzurePublicCloud", "tenantId": ds.tenant_id,
        "subscriptionId": ds.subscription_id, "resourceGroup": "devstack-nodes",
        "aadClientId": ds.client_id("mic"), "aadClientSecret": ds.client_secret("mic"),
    }))  # fmt: skip
    azure.chmod(0o600)
    log = open(e2e_root / "seed-flow-mic.log", "wb")  # noqa: SIM115 - the child's
    process = subprocess.Popen(
        [sys.executable, "-m", "podidentity.mic", f"--kubeconfig={cluster.kubeconfig}",
         f"--cloud-config={azure}", f"--arm-endpoint={ds.arm_endpoint}",
         f"--authority-host={ds.authority_host}", f"--ca-bundle={ds.ca_bundle}",
         "--probe-addr=127.0.0.1:0", "--leader-election-namespace=default"],
        stdout=log, stderr=log, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    try:
        # Assignments other tests wrote by hand for pods that are gone are MIC's to undo: once
        # it has, the VM holds the identity only if something needs it.
        kube.wait_for(lambda: ARM_IDENTITY not in ds.attached(IMDS_NODE), 120,
                      "MIC to detach the identity nothing needs")  # fmt: skip
        yield
    finally:
        process.terminate()
        process.wait(20)
        log.close()
        # MIC undid the hand-written assignments of the world's pods (none of them existed);
        # put them back for the tests that rely on them, as `nmi` wrote them.
        our_nmi.seed()


def identity_and_binding(ds: Devstack) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {"apiVersion": API, "kind": "AzureIdentity",
         "metadata": {"name": IDENTITY, "namespace": "default"},
         "spec": {"type": 0, "resourceID": ds.resource_id(ARM_IDENTITY),
                  "clientID": ds.client_id(ARM_IDENTITY)}},
        {"apiVersion": API, "kind": "AzureIdentityBinding",
         "metadata": {"name": BINDING, "namespace": "default"},
         "spec": {"azureIdentity": IDENTITY, "selector": SELECTOR}},
    )  # fmt: skip


def states(cluster: Cluster, pod: str) -> str:
    """The statuses of the pod's AzureAssignedIdentities ("" when there are none)."""
    out = cluster.kubectl("get", "azureassignedidentities", "-n", "default", "-o", "json")
    return ",".join(i.get("status", {}).get("status", "")
                    for i in json.loads(out.stdout)["items"] if i["spec"]["pod"] == pod)  # fmt: skip


def imds_answer(cluster: Cluster, pod: str, url: str) -> tuple[int, str] | None:
    """wget's answer when it got one; None when it failed or hung (a stale nat rule of a cluster
    gone from this host can send the request nowhere until our NMI's rules are first again)."""
    try:
        rc, out = wget(cluster, pod, url)
    except subprocess.TimeoutExpired:
        return None
    return (rc, out) if rc == 0 else None


def cleanup(cluster: Cluster, *pods: str) -> None:
    for pod in pods:
        cluster.kubectl("delete", "pod", pod, "--ignore-not-found", "--wait=true",
                        "--timeout=120s", timeout=150, check=False)  # fmt: skip
    cluster.kubectl("delete", "azureidentitybinding", BINDING, "--ignore-not-found", check=False)
    cluster.kubectl("delete", "azureidentity", IDENTITY, "--ignore-not-found", check=False)


def test_seed_flow_with_our_mic_and_our_nmi(
    cluster: Cluster, node_plugin: NodePlugin | DaemonSetPlugin, e2e_devstack: Devstack,
    our_nmi: ClusterNmi, mic: None,
) -> None:  # fmt: skip
    ds = e2e_devstack
    client_id = ds.client_id(ARM_IDENTITY)
    options = {} if our_nmi.port == NMI_DEFAULT_PORT else {"nmiport": str(our_nmi.port)}
    pod = seed_pod(options)  # the seed's azure/kv FlexVolume, usepodidentity, its options
    pod["metadata"] = {"name": "seed-flow-app", "namespace": "default",
                       "labels": {"app": "seed-flow-app", "aadpodidbinding": SELECTOR}}  # fmt: skip
    pod["spec"]["containers"][0]["name"] = "seed-flow-app"
    pod["spec"]["terminationGracePeriodSeconds"] = 5
    try:
        kube.apply(cluster, *identity_and_binding(ds), pod)
        kube.wait_for(lambda: states(cluster, "seed-flow-app") == "Assigned", 120,
                      "MIC's AzureAssignedIdentity Assigned")  # fmt: skip
        assert ARM_IDENTITY in ds.attached(IMDS_NODE), "the node's VM holds the pod's identity"

        # The volume mounted with the token NMI served for the pod's identity.
        kube.wait_ready(cluster, "seed-flow-app")
        assert kube.read(cluster, "seed-flow-app", "/kvmnt/secret1") == "testkv-secret1-value"

        # The application asks IMDS as it would on Azure; NMI intercepts and answers for the pod.
        # (Retried: another cluster's NMI on this host may hold the nat table's first jump until
        # ours re-establishes its rules, within its 5 s interval.)
        url = f"{IMDS}?api-version=2018-02-01&resource={VAULT}"
        _, out = kube.wait_for(lambda: imds_answer(cluster, "seed-flow-app", url), 150, "a token")
        assert claims(out)["appid"] == client_id
        # The devstack's Key Vault listens on the host's 127.0.0.1, out of the pod's reach: the
        # application's token is shown to be accepted by the vault from here instead.
        token = json.loads(out[out.index("{") : out.rindex("}") + 1])["access_token"]
        reply = requests.get(
            ds.vault_url("testkv").rstrip("/") + "/secrets/secret1",
            params={"api-version": "7.4"}, headers={"Authorization": f"Bearer {token}"},
            verify=ds.ca_bundle, timeout=30,
        )  # fmt: skip
        assert reply.status_code == 200, f"the vault refused the pod's token: {reply.status_code}"
        assert reply.json()["value"] == "testkv-secret1-value"

        # Nothing else needs the identity: deleting the pod makes MIC take it back.
        kube.delete_pod(cluster, "seed-flow-app")
        kube.wait_for(lambda: states(cluster, "seed-flow-app") == "", 120,
                      "MIC to delete the AzureAssignedIdentity")  # fmt: skip
        kube.wait_for(lambda: ARM_IDENTITY not in ds.attached(IMDS_NODE), 60,
                      "the VM to lose the identity")  # fmt: skip
    finally:
        cleanup(cluster, "seed-flow-app")


def test_deleting_the_binding_unassigns(
    cluster: Cluster, e2e_devstack: Devstack, our_nmi: ClusterNmi, mic: None
) -> None:
    ds = e2e_devstack
    app = kube.pod("seed-flow-plain", [], [],
                   labels={"app": "seed-flow-plain", "aadpodidbinding": SELECTOR})  # fmt: skip
    try:
        kube.apply(cluster, *identity_and_binding(ds), app)
        kube.wait_ready(cluster, "seed-flow-plain")
        kube.wait_for(lambda: states(cluster, "seed-flow-plain") == "Assigned", 120,
                      "MIC's AzureAssignedIdentity Assigned")  # fmt: skip
        url = f"{IMDS}?api-version=2018-02-01&resource={VAULT}"
        rc, out = kube.wait_for(
            lambda: imds_answer(cluster, "seed-flow-plain", url), 150, "a token"
        )
        assert claims(out)["appid"] == ds.client_id(ARM_IDENTITY)

        # The pod stays, its binding goes: nothing needs the identity any more.
        cluster.kubectl("delete", "azureidentitybinding", BINDING)
        kube.wait_for(lambda: states(cluster, "seed-flow-plain") == "", 120,
                      "MIC to delete the AzureAssignedIdentity")  # fmt: skip
        kube.wait_for(lambda: ARM_IDENTITY not in ds.attached(IMDS_NODE), 60,
                      "the VM to lose the identity")  # fmt: skip
        rc, out = wget(cluster, "seed-flow-plain", url)
        assert rc != 0 and "access_token" not in out, "NMI still serves the unbound identity"
    finally:
        cleanup(cluster, "seed-flow-plain")
