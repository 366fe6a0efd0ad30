"""Our MIC on the real cluster: a labelled pod's identity reaches the VM of its node (the
devstack's Resource Manager), so that node's IMDS issues tokens for it, and leaves it when the
pod goes. MIC runs as the `kv-mic` command does, with azure.json and the admin kubeconfig.

The rest of the seed flow (our NMI serving the token to the pod's `azure/kv` volume) needs our
NMI, which lives on its own branch; this test covers what MIC owns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.client import Devstack
from devstack.cluster import Cluster
from devstack.cluster.nmi import ClusterNmi
from podidentity.crds.resources import crd_manifest
from tests.e2e.kube import apply, container, delete_pod, wait_for, wait_ready

VM = "devstack-node-0"  # the default seed's VM for the one node
REPO = Path(__file__).resolve().parents[2]


def imds_token(ds: Devstack, client_id: str) -> int:
    reply = requests.get(
        ds.node_imds_host(VM) + "/metadata/identity/oauth2/token",
        params={"api-version": "2018-02-01", "resource": "https://vault.azure.net",
                "client_id": client_id},
        headers={"Metadata": "true"}, timeout=10,
    )  # fmt: skip
    return reply.status_code


@pytest.fixture(scope="module")
def mic(
    cluster: Cluster, e2e_devstack: Devstack, e2e_root: Path, our_nmi: ClusterNmi
) -> Iterator[subprocess.Popen[bytes]]:
    ds = e2e_devstack
    cluster.kubectl("apply", "--server-side", "-f", "-", input=crd_manifest())
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/azureassignedidentities.aadpodidentity.k8s.io")  # fmt: skip
    # A cloud provider would set this; the node is the devstack's VM for MIC and IMDS alike.
    node = json.loads(cluster.kubectl("get", "node", cluster.node_name, "-o", "json").stdout)
    if not node["spec"].get("providerID"):
        cluster.kubectl("patch", "node", cluster.node_name, "--type=merge",
                        "-p", json.dumps({"spec": {"providerID": ds.provider_id(VM)}}))  # fmt: skip
    azure = e2e_root / "azure.json"
    azure.write_text(json.dumps({
        "cloud": "AzurePublicCloud", "tenantId": ds.tenant_id,
        "subscriptionId": ds.subscription_id, "resourceGroup": "devstack-nodes",
        "aadClientId": ds.client_id("mic"), "aadClientSecret": ds.client_secret("mic"),
    }))  # fmt: skip
    azure.chmod(0o600)
    log = open(e2e_root / "mic.log", "wb")  # noqa: SIM115 - the child's
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "podidentity.mic", f"--kubeconfig={cluster.kubeconfig}",
         f"--cloud-config={azure}", f"--arm-endpoint={ds.arm_endpoint}",
         f"--authority-host={ds.authority_host}", f"--ca-bundle={ds.ca_bundle}",
         "--probe-addr=127.0.0.1:0", "--leader-election-namespace=default"],
        stdout=log, stderr=log, env=env,
    )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        process.wait(20)
        log.close()
        # MIC undid the hand-written assignments of the world's pods (none of them existed):
        # put them back for the tests that rely on them, as `nmi` wrote them.
        our_nmi.seed()


def test_mic_gives_the_pods_identity_to_its_vm_and_takes_it_back(
    cluster: Cluster, e2e_devstack: Devstack, mic: subprocess.Popen[bytes]
) -> None:
    ds = e2e_devstack
    client_id = ds.client_id("pod-identity")
    # Earlier cases attached it by hand for pods that are gone: MIC undoes that first.
    wait_for(lambda: "pod-identity" not in ds.attached(VM), 120, "MIC to detach what nothing needs")
    assert imds_token(ds, client_id) != 200, "IMDS issues nothing before MIC assigns it"
    apply(
        cluster,
        {"apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
         "metadata": {"name": "mic-e2e-reader", "namespace": "default"},
         "spec": {"type": 0, "resourceID": ds.resource_id("pod-identity"), "clientID": client_id}},
        {"apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentityBinding",
         "metadata": {"name": "mic-e2e-binding", "namespace": "default"},
         "spec": {"azureIdentity": "mic-e2e-reader", "selector": "mic-e2e"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "mic-app", "namespace": "default",
                      "labels": {"aadpodidbinding": "mic-e2e"}},
         "spec": {"terminationGracePeriodSeconds": 5, "containers": [container("mic-app", [])]}},
    )  # fmt: skip
    wait_ready(cluster, "mic-app")

    def status() -> str:
        out = cluster.kubectl("get", "azureassignedidentities", "-n", "default", "-o", "json")
        items = json.loads(out.stdout)["items"]
        return ",".join(i.get("status", {}).get("status", "") for i in items
                        if i["spec"]["pod"] == "mic-app")  # fmt: skip

    wait_for(lambda: status() == "Assigned", 120, "the AzureAssignedIdentity Assigned")
    assert "pod-identity" in ds.attached(VM)
    assert imds_token(ds, client_id) == 200, "the node's IMDS now issues the pod's token"

    delete_pod(cluster, "mic-app")
    wait_for(lambda: status() == "", 120, "the AzureAssignedIdentity gone")
    wait_for(lambda: "pod-identity" not in ds.attached(VM), 60, "the identity detached")
    # vm-user was never in any AzureAssignedIdentity: MIC leaves it alone. (no-access may have
    # gone: earlier cases assigned it by hand, as MIC would, for pods that no longer exist.)
    assert "vm-user" in ds.attached(VM), "an identity MIC did not assign stays"
    cluster.kubectl("delete", "azureidentitybinding", "mic-e2e-binding", "--ignore-not-found")
    cluster.kubectl("delete", "azureidentity", "mic-e2e-reader", "--ignore-not-found")
