"""Issue 14, item 1 (and the Event of item 12) on the real kubelet: a pod cannot borrow another
pod's identity through the pod keys of its volume's options or attributes, and a republish that
kept old files is an Event on the pod."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml

from devstack.client import Devstack
from devstack.cluster import Cluster
from devstack.cluster.nodeplugin import NodePlugin
from tests.e2e import kube
from tests.e2e.test_volumes import SEED_POD, csi_pod, objects

TENANT = "11111111-1111-1111-1111-111111111111"
SEED_FLEX_POD = "nginx-flex-kv-podid"  # NMI gives these two pods identities
SEED_CSI_POD = "nginx-csi-kv-podid"


@pytest.mark.parametrize(
    "key",
    [
        "kubernetes.io/pod.name",
        "Kubernetes.IO/Pod.Name",
        "csi.storage.k8s.io/pod.name",
        "kubernetes.io/mounterArgs.FsGroup",
    ],
)
def test_a_flexvolume_pod_naming_the_seed_pod_in_its_options_gets_nothing(
    cluster: Cluster, node_plugin: NodePlugin, nmi_options: dict[str, str], key: str
) -> None:
    """The seed pod's volume, copied by another tenant with its pod keys set to the seed pod's
    (kubelet applies a pod's options after its own keys). The API server already refuses such
    a pod: option keys in the kubernetes.io and k8s.io namespaces are reserved, in any case.
    The node plugin's own verification (`tests/kube/test_flexvolume_pods.py`) is the second
    line, for whatever reaches the shim without that validation."""
    name = "tenant-flex"
    manifest: dict[str, Any] = yaml.safe_load(SEED_POD)
    manifest["metadata"] = {"name": name, "namespace": "default", "labels": {"app": name}}
    manifest["spec"]["containers"][0]["name"] = name
    options = manifest["spec"]["volumes"][0]["flexVolume"]["options"]
    options.update(nmi_options)
    options[key] = "0" if "fsgroup" in key.lower() else SEED_FLEX_POD
    result = cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert "namespaces are reserved" in result.stderr
    missing = cluster.kubectl("get", "pod", name, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    assert not [r for r in node_plugin.records() if SEED_FLEX_POD in r.read_text()]


def test_kubelet_overwrites_the_csi_pod_attributes_a_pod_writes(
    cluster: Cluster, node_plugin: NodePlugin, e2e_devstack: Devstack
) -> None:
    """CSI is not affected: kubelet sets csi.storage.k8s.io/pod.* after the volume attributes,
    so the driver sees the real pod whatever the pod wrote. A service-principal volume mounts
    whatever the pod is called, so the record shows who the driver thought the pod was."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kvcreds-iso", "namespace": "default"},
        "type": "Opaque",
        "stringData": {
            "clientid": e2e_devstack.client_id("kvcreds"),
            "clientsecret": e2e_devstack.client_secret("kvcreds"),
        },
    }
    forged_uid = str(uuid.uuid4())
    attributes = {
        "keyvaultName": "testkv",
        "tenantId": TENANT,
        "objects": objects({"objectName": "app-secret-2", "objectType": "secret"}),
        "csi.storage.k8s.io/pod.name": SEED_CSI_POD,
        "csi.storage.k8s.io/pod.namespace": "kube-system",
        "csi.storage.k8s.io/pod.uid": forged_uid,
        "csi.storage.k8s.io/serviceAccount.name": "admin",
    }
    name = "tenant-csi"
    kube.apply(cluster, secret, csi_pod(name, attributes, secret_ref="kvcreds-iso"))
    try:
        uid = kube.wait_ready(cluster, name)["metadata"]["uid"]
        assert kube.read(cluster, name, "/mnt/secrets/app-secret-2") == "app-secret-2-value"
        pods = [
            json.loads(r.read_text())["spec"]["pod"]
            for r in node_plugin.records()
            if uid in json.loads(r.read_text())["target_path"]
        ]
        assert pods == [
            {"name": name, "namespace": "default", "uid": uid, "service_account": "default"}
        ]
    finally:
        kube.delete_pod(cluster, name)


def test_a_republish_that_kept_old_files_is_an_event_on_the_pod(
    cluster: Cluster, node_plugin: NodePlugin, e2e_devstack: Devstack, nmi_options: dict[str, str]
) -> None:
    """Access revoked after the mount: kubelet's periodic republish (requiresRepublish) gets OK
    and the files stay, and the pod gets a Warning Event saying they could not be refreshed."""
    attributes = {
        "usePodIdentity": "true",
        "keyvaultName": "testkv",
        "tenantId": TENANT,
        "objects": objects({"objectName": "app-secret-3", "objectType": "secret"}),
        **nmi_options,
    }
    kube.apply(cluster, csi_pod(SEED_CSI_POD, attributes))
    full = ["get", "list"]
    try:
        kube.wait_ready(cluster, SEED_CSI_POD)
        e2e_devstack.set_policy("testkv", "pod-identity", secrets=[], keys=full, certificates=full)
        events = kube.wait_for(
            lambda: [
                e for e in kube.events(cluster, SEED_CSI_POD)
                if e["reason"] == "SecretsNotRefreshed"
            ],
            300, "a SecretsNotRefreshed event",
        )  # fmt: skip
        assert events[0]["type"] == "Warning"
        assert "PERMISSION_DENIED" in events[0]["message"]
        assert kube.read(cluster, SEED_CSI_POD, "/mnt/secrets/app-secret-3") == "app-secret-3-value"
    finally:
        e2e_devstack.set_policy(
            "testkv", "pod-identity", secrets=full, keys=full, certificates=full
        )
        kube.delete_pod(cluster, SEED_CSI_POD)
