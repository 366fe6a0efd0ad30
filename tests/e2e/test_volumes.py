"""Volumes on a real kubelet: every pod goes through kubectl, kubelet execs the FlexVolume shim
or calls the CSI socket, and the files are read from inside the container with kubectl exec."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient

from devstack.client import Devstack
from devstack.cluster import Cluster
from devstack.cluster.images import APP_IMAGE_SHORT
from devstack.cluster.nodeplugin import DRIVER, DaemonSetPlugin, NodePlugin
from tests.e2e import kube

TENANT = "11111111-1111-1111-1111-111111111111"

# The seed pod exactly as users write it (the original azure/kv docs), with the placeholders
# filled for the devstack and an image that exists without a registry.
SEED_POD = f"""
apiVersion: v1
kind: Pod
metadata:
  labels:
    app: nginx-flex-kv-podid
  name: nginx-flex-kv-podid
spec:
  containers:
  - name: nginx-flex-kv-podid
    image: {APP_IMAGE_SHORT}
    imagePullPolicy: Never
    command: {kube.SLEEPER}
    volumeMounts:
    - name: test
      mountPath: /kvmnt
      readOnly: true
  volumes:
  - name: test
    flexVolume:
      driver: "azure/kv"
      options:
        usepodidentity: "true"
        keyvaultname: "testkv"
        keyvaultobjectnames: "secret1;key1;cert1"
        keyvaultobjecttypes: secret;key;cert
        keyvaultobjectversions: ""
        resourcegroup: "rg"
        subscriptionid: "00000000-0000-0000-0000-000000000000"
        tenantid: "{TENANT}"
"""


def admin_clients(ds: Devstack) -> tuple[SecretClient, KeyClient, CertificateClient]:
    credential = ClientSecretCredential(
        ds.tenant_id, ds.client_id("admin"), ds.client_secret("admin"),
        authority=ds.authority_host, connection_verify=ds.ca_bundle,
        disable_instance_discovery=True,
    )  # fmt: skip
    kw: dict[str, Any] = {"verify_challenge_resource": False, "connection_verify": ds.ca_bundle}
    url = ds.vault_url("testkv")
    return (
        SecretClient(url, credential, **kw),
        KeyClient(url, credential, **kw),
        CertificateClient(url, credential, **kw),
    )


def seed_pod(nmi_options: dict[str, str]) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(SEED_POD)
    manifest["spec"]["volumes"][0]["flexVolume"]["options"].update(nmi_options)
    return manifest


def csi_pod(name: str, attributes: dict[str, str], **kw: Any) -> dict[str, Any]:
    secret_ref = kw.pop("secret_ref", None)
    csi: dict[str, Any] = {"driver": DRIVER, "readOnly": True, "volumeAttributes": attributes}
    if secret_ref:
        csi["nodePublishSecretRef"] = {"name": secret_ref}
    return kube.pod(
        name,
        [{"name": "kv", "csi": csi}],
        [{"name": "kv", "mountPath": "/mnt/secrets", "readOnly": True}],
        **kw,
    )


def objects(*entries: dict[str, str]) -> str:
    return yaml.safe_dump({"array": [yaml.safe_dump(e) for e in entries]})


def test_seed_flexvolume_pod_reads_the_vault_values(
    cluster: Cluster,
    node_plugin: NodePlugin | DaemonSetPlugin,
    e2e_devstack: Devstack,
    nmi_options: dict[str, str],
) -> None:
    kube.apply(cluster, seed_pod(nmi_options))
    kube.wait_ready(cluster, "nginx-flex-kv-podid")
    listing = kube.exec_(cluster, "nginx-flex-kv-podid", "ls", "/kvmnt").split()
    assert sorted(listing) == ["cert1", "key1", "secret1"]

    # The bytes the azure/kv driver wrote, so pod specs written for it keep working: the
    # secret as stored, the key's modulus (base64url, as Key Vault sends it), the DER leaf.
    secrets, keys, certs = admin_clients(e2e_devstack)
    assert (
        kube.read(cluster, "nginx-flex-kv-podid", "/kvmnt/secret1")
        == secrets.get_secret("secret1").value
    )
    jwk = keys.get_key("key1").key
    modulus = base64.urlsafe_b64encode(jwk.n).rstrip(b"=").decode()  # type: ignore[arg-type]
    assert kube.read(cluster, "nginx-flex-kv-podid", "/kvmnt/key1") == modulus
    der = base64.b64decode(kube.exec_(cluster, "nginx-flex-kv-podid", "base64", "/kvmnt/cert1"))
    assert der == certs.get_certificate("cert1").cer
    # Read-only inside the container, as the pod asked.
    denied = cluster.kubectl(
        "exec", "nginx-flex-kv-podid", "--", "touch", "/kvmnt/new", check=False
    )
    assert denied.returncode != 0
    kube.delete_pod(cluster, "nginx-flex-kv-podid")


def test_csi_inline_objects_with_file_modes(
    cluster: Cluster, node_plugin: NodePlugin | DaemonSetPlugin, nmi_options: dict[str, str]
) -> None:
    attributes = {
        "usePodIdentity": "true",
        "keyvaultName": "testkv",
        "tenantId": TENANT,
        "objects": objects(
            {
                "objectName": "secret1",
                "objectType": "secret",
                "objectAlias": "db-password",
                "filePermission": "0600",
            },
            {"objectName": "app-secret-1", "objectType": "secret", "objectAlias": "app/one"},
        ),
        **nmi_options,
    }
    kube.apply(cluster, csi_pod("nginx-csi-kv-podid", attributes))
    kube.wait_ready(cluster, "nginx-csi-kv-podid")
    assert (
        kube.read(cluster, "nginx-csi-kv-podid", "/mnt/secrets/db-password")
        == "testkv-secret1-value"
    )
    assert kube.read(cluster, "nginx-csi-kv-podid", "/mnt/secrets/app/one") == "app-secret-1-value"
    modes = kube.exec_(
        cluster,
        "nginx-csi-kv-podid",
        "stat",
        "-L",
        "-c",
        "%a %n",
        "/mnt/secrets/db-password",
        "/mnt/secrets/app/one",
    )
    assert modes.split("\n")[:2] == ["600 /mnt/secrets/db-password", "644 /mnt/secrets/app/one"]
    kube.delete_pod(cluster, "nginx-csi-kv-podid")


def test_csi_service_principal_through_node_publish_secret_ref(
    cluster: Cluster, node_plugin: NodePlugin | DaemonSetPlugin, e2e_devstack: Devstack
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kvcreds", "namespace": "default"},
        "type": "Opaque",
        "stringData": {
            "clientid": e2e_devstack.client_id("kvcreds"),
            "clientsecret": e2e_devstack.client_secret("kvcreds"),
        },
    }
    attributes = {
        "keyvaultName": "testkv",
        "tenantId": TENANT,
        "objects": objects({"objectName": "app-secret-2", "objectType": "secret"}),
    }
    kube.apply(cluster, secret, csi_pod("sp-pod", attributes, secret_ref="kvcreds"))
    kube.wait_ready(cluster, "sp-pod")
    assert kube.read(cluster, "sp-pod", "/mnt/secrets/app-secret-2") == "app-secret-2-value"
    kube.delete_pod(cluster, "sp-pod")


def test_workload_identity_gets_kubelets_service_account_token(
    cluster: Cluster, node_plugin: NodePlugin | DaemonSetPlugin, e2e_devstack: Devstack
) -> None:
    """kubelet requests a token for the CSIDriver's `tokenRequests` audience and hands it to
    NodePublishVolume; the devstack's Entra ID trusts this cluster's issuer (as a federated
    credential trusts a cluster's OIDC issuer) and the federation for default/workload-sa."""
    e2e_devstack.trust_sa_issuer(cluster.sa_issuer, cluster.sa_public_key.read_text())
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "workload-sa", "namespace": "default"},
    }
    attributes = {
        "clientID": e2e_devstack.client_id("workload"),
        "keyvaultName": "testkv",
        "tenantId": TENANT,
        "objects": objects({"objectName": "app-secret-3", "objectType": "secret"}),
    }
    kube.apply(
        cluster, account, csi_pod("nginx-csi-kv-wi", attributes, service_account="workload-sa")
    )
    kube.wait_ready(cluster, "nginx-csi-kv-wi")
    assert (
        kube.read(cluster, "nginx-csi-kv-wi", "/mnt/secrets/app-secret-3") == "app-secret-3-value"
    )
    kube.delete_pod(cluster, "nginx-csi-kv-wi")


def test_bad_volume_shows_its_error_in_events_and_leaves_nothing_mounted(
    cluster: Cluster, node_plugin: NodePlugin | DaemonSetPlugin, nmi_options: dict[str, str]
) -> None:
    attributes = {
        "usePodIdentity": "true",
        "keyvaultName": "testkv",
        "tenantId": TENANT,
        "keyvaultobjectnames": "secret1;key1",
        "keyvaultobjecttypes": "secret",  # one type for two names
        **nmi_options,
    }
    kube.apply(cluster, csi_pod("bad-volume-pod", attributes))

    def failed_mount() -> str:
        messages = [
            e["message"]
            for e in kube.events(cluster, "bad-volume-pod")
            if e["reason"] == "FailedMount"
        ]
        return "\n".join(messages)

    message = kube.wait_for(failed_mount, 180, "a FailedMount event")
    print(message)
    assert "keyvaultobjecttypes" in message
    described = kube.describe(cluster, "bad-volume-pod")
    assert "FailedMount" in described and "keyvaultobjecttypes" in described
    uid = kube.get(cluster, "pod", "bad-volume-pod")["metadata"]["uid"]
    assert [m for m in kube.pod_mounts(cluster, uid) if "kubernetes.io~csi" in m] == []
    # kubelet finishes its current wait for the pod's volumes (up to two minutes) before it
    # acts on the deletion.
    kube.delete_pod(cluster, "bad-volume-pod", timeout=300)
    assert kube.pod_mounts(cluster, uid) == []


@pytest.mark.parametrize("kind", ["flex", "csi"])
def test_pod_deletion_unmounts_and_removes_everything(
    cluster: Cluster,
    node_plugin: NodePlugin | DaemonSetPlugin,
    nmi_options: dict[str, str],
    kind: str,
) -> None:
    if kind == "flex":
        manifest = seed_pod(nmi_options)
        name = "nginx-flex-kv-podid"
    else:
        name = "nginx-csi-kv-podid"
        manifest = csi_pod(name, {"usePodIdentity": "true", "keyvaultName": "testkv", "tenantId": TENANT,
                                  "keyvaultobjectnames": "secret1", "keyvaultobjecttypes": "secret", **nmi_options})  # fmt: skip
    kube.apply(cluster, manifest)
    uid = kube.wait_ready(cluster, name)["metadata"]["uid"]
    volume_dir = cluster.kubelet_root / "pods" / uid / "volumes"
    assert any(kube.pod_mounts(cluster, uid))
    assert len(node_plugin.records()) >= 1
    kube.delete_pod(cluster, name)
    kube.wait_for(
        lambda: not (cluster.kubelet_root / "pods" / uid).exists(),
        120,
        "kubelet to remove the pod dir",
    )
    assert kube.pod_mounts(cluster, uid) == []
    assert not volume_dir.exists()
    assert not [r for r in node_plugin.records() if uid in r.read_text()]


def test_rotation_reaches_the_files_inside_both_pods(
    cluster: Cluster,
    node_plugin: NodePlugin | DaemonSetPlugin,
    e2e_devstack: Devstack,
    nmi_options: dict[str, str],
) -> None:
    e2e_devstack.set_secret("testkv", "rotating", "version-one")
    flex = kube.pod(
        "rotate-flex",
        [{"name": "kv", "flexVolume": {"driver": "azure/kv", "options": {
            "usepodidentity": "true", "keyvaultname": "testkv", "keyvaultobjectnames": "rotating",
            "keyvaultobjecttypes": "secret", "tenantid": TENANT, **nmi_options}}}],
        [{"name": "kv", "mountPath": "/kvmnt", "readOnly": True}],
        labels={"app": "rotate"},
    )  # fmt: skip
    flex["metadata"]["name"] = "nginx-flex-kv-podid"  # NMI knows this pod's identity
    csi = csi_pod("nginx-csi-kv-podid", {"usePodIdentity": "true", "keyvaultName": "testkv",
                  "tenantId": TENANT, "keyvaultobjectnames": "rotating", "keyvaultobjecttypes": "secret", **nmi_options})  # fmt: skip
    kube.apply(cluster, flex, csi)
    kube.wait_ready(cluster, "nginx-flex-kv-podid")
    kube.wait_ready(cluster, "nginx-csi-kv-podid")
    assert kube.read(cluster, "nginx-flex-kv-podid", "/kvmnt/rotating") == "version-one"
    assert kube.read(cluster, "nginx-csi-kv-podid", "/mnt/secrets/rotating") == "version-one"

    e2e_devstack.set_secret("testkv", "rotating", "version-two")
    for pod_name, path in (
        ("nginx-flex-kv-podid", "/kvmnt/rotating"),
        ("nginx-csi-kv-podid", "/mnt/secrets/rotating"),
    ):
        kube.wait_for(
            lambda p=pod_name, f=path: kube.read(cluster, p, f) == "version-two",
            node_plugin.rotation_interval + 90,
            f"rotation in {pod_name}",
        )  # type: ignore[misc]
    kube.delete_pod(cluster, "nginx-flex-kv-podid")
    kube.delete_pod(cluster, "nginx-csi-kv-podid")


def test_driver_restart_and_kubelet_restart_keep_mounted_volumes_working(
    cluster: Cluster,
    node_plugin: NodePlugin | DaemonSetPlugin,
    e2e_devstack: Devstack,
    nmi_options: dict[str, str],
) -> None:
    e2e_devstack.set_secret("testkv", "restarts", "before")
    kube.apply(cluster, seed_pod(nmi_options) | {"metadata": {"name": "nginx-flex-kv-podid"}})
    csi = csi_pod("nginx-csi-kv-podid", {"usePodIdentity": "true", "keyvaultName": "testkv",
                  "tenantId": TENANT, "keyvaultobjectnames": "restarts", "keyvaultobjecttypes": "secret", **nmi_options})  # fmt: skip
    kube.apply(cluster, csi)
    kube.wait_ready(cluster, "nginx-flex-kv-podid")
    uid = kube.wait_ready(cluster, "nginx-csi-kv-podid")["metadata"]["uid"]

    node_plugin.restart()
    kube.wait_for(
        lambda: (cluster.plugins_registry / f"{DRIVER}-reg.sock").exists(), 60, "re-registration"
    )
    assert kube.read(cluster, "nginx-csi-kv-podid", "/mnt/secrets/restarts") == "before"
    assert kube.read(cluster, "nginx-flex-kv-podid", "/kvmnt/secret1") == "testkv-secret1-value"
    # Rotation still reaches a volume mounted before the restart.
    e2e_devstack.set_secret("testkv", "restarts", "after-driver-restart")
    kube.wait_for(
        lambda: (
            kube.read(cluster, "nginx-csi-kv-podid", "/mnt/secrets/restarts")
            == "after-driver-restart"
        ),
        node_plugin.rotation_interval + 90,
        "rotation after driver restart",
    )

    cluster.restart_kubelet()
    for name in ("nginx-flex-kv-podid", "nginx-csi-kv-podid"):
        pod = kube.wait_ready(cluster, name)
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert (
        kube.read(cluster, "nginx-csi-kv-podid", "/mnt/secrets/restarts") == "after-driver-restart"
    )
    assert kube.read(cluster, "nginx-flex-kv-podid", "/kvmnt/secret1") == "testkv-secret1-value"

    kube.delete_pod(cluster, "nginx-flex-kv-podid")
    kube.delete_pod(cluster, "nginx-csi-kv-podid")
    kube.wait_for(
        lambda: not (cluster.kubelet_root / "pods" / uid).exists(), 120, "pod dir removed"
    )
    assert kube.pod_mounts(cluster, uid) == []
