"""What no upstream driver does, read from inside a pod on the real kubelet: an optional object
that appears later, a second vault, a selection by name pattern, and a split certificate."""

from __future__ import annotations

import uuid

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.client import Devstack
from devstack.cluster import Cluster
from devstack.cluster.nodeplugin import DaemonSetPlugin, NodePlugin
from devstack.harness.world import TENANT
from tests.e2e import kube
from tests.e2e.test_volumes import csi_pod, objects

POD = "nginx-csi-kv-podid"  # the devstack's NMI gives this pod the `pod-identity` identity


def test_optional_second_vault_selection_and_split_certificate_in_a_pod(
    cluster: Cluster,
    node_plugin: NodePlugin | DaemonSetPlugin,
    e2e_devstack: Devstack,
    nmi_options: dict[str, str],
) -> None:
    late = f"late-{uuid.uuid4().hex[:6]}"
    e2e_devstack.set_policy(
        "otherkv", "pod-identity", secrets=["get", "list"], keys=[], certificates=[]
    )
    attributes = {
        "usePodIdentity": "true",
        "keyvaultName": "testkv",
        "tenantId": TENANT,
        "objects": objects(
            {"objectName": late, "objectType": "secret", "optional": "true"},
            {
                "objectName": "secret1",
                "objectType": "secret",
                "keyvaultName": "otherkv",
                "objectAlias": "other/secret1",
            },
            {"objectNamePattern": "app-secret-*", "objectType": "secret", "objectAlias": "app"},
            {
                "objectName": "cert1",
                "objectType": "secret",
                "objectAlias": "tls/server",
                "certParts": "key:0600,crt,chain",
            },
        ),
        **nmi_options,
    }
    kube.apply(cluster, csi_pod(POD, attributes))
    kube.wait_ready(cluster, POD)
    try:
        listing = kube.exec_(cluster, POD, "ls", "/mnt/secrets", "/mnt/secrets/app").split()
        assert late not in listing
        assert kube.read(cluster, POD, "/mnt/secrets/other/secret1") == "otherkv-secret1-value"
        for i in (1, 2, 3):
            path = f"/mnt/secrets/app/app-secret-{i}"
            assert kube.read(cluster, POD, path) == f"app-secret-{i}-value"
        crt = x509.load_pem_x509_certificate(
            kube.read(cluster, POD, "/mnt/secrets/tls/server.crt").encode()
        )
        key = serialization.load_pem_private_key(
            kube.read(cluster, POD, "/mnt/secrets/tls/server.key").encode(), password=None
        )
        assert crt.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
        mode = kube.exec_(cluster, POD, "stat", "-L", "-c", "%a", "/mnt/secrets/tls/server.key")
        assert mode.strip() == "600"

        # The optional object appears once it exists: rotation adds its file in the pod.
        e2e_devstack.set_secret("testkv", late, "arrived")
        kube.wait_for(
            lambda: late in kube.exec_(cluster, POD, "ls", "/mnt/secrets").split(),
            node_plugin.rotation_interval + 90,  # the DaemonSet polls every 2m
            "the optional object's file in the pod",
        )
        assert kube.read(cluster, POD, f"/mnt/secrets/{late}") == "arrived"
    finally:
        kube.delete_pod(cluster, POD)
