"""deploy/: what a cluster operator relies on: pinned images, resources, privileges, and the
node plugin wired as kubelet needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from driver.config import parse_settings
from podidentity.nmi.config import parse_settings as nmi_settings
from tests.deploy.manifest_checks import (
    AKS_PLUGIN_DIR,
    DRIVER,
    EXAMPLES,
    IMAGE,
    REPO,
    UPSTREAM_PLUGIN_DIR,
    by,
    host_paths,
    ident,
    upstream_dir_overlay,
    validate,
)
from tests.deploy.manifests import (
    CLUSTER_SCOPED,
    Doc,
    build,
    containers,
    load_docs,
    pod_spec,
)

# --- what a cluster operator relies on --------------------------------------------------------


def test_objects_are_unique_and_sensibly_namespaced(full: list[Doc]) -> None:
    idents = [ident(d) for d in full]
    assert len(idents) == len(set(idents))
    for doc in full:
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"], ident(doc)
        else:
            assert doc["metadata"]["namespace"] == "kv-driver", ident(doc)
    for doc in full:
        for subject in doc.get("subjects", []):
            assert subject["namespace"] == "kv-driver"


def test_images_are_pinned_by_tag(full: list[Doc]) -> None:
    images = {
        c["image"] for d in full if d["kind"] in ("DaemonSet", "Deployment") for c in containers(d)
    }
    # NMI and MIC are ours too: the driver's image, with `kv-nmi` / `kv-mic`.
    assert images == {IMAGE}
    for path in EXAMPLES:
        for doc in load_docs(path):
            if doc["kind"] == "Pod":
                for c in containers(doc):
                    name, _, tag = c["image"].rpartition(":")
                    assert name and tag and tag != "latest", c["image"]


def test_every_container_has_requests_and_limits(full: list[Doc]) -> None:
    for doc in full:
        if doc["kind"] in ("DaemonSet", "Deployment"):
            for c in containers(doc):
                assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
                assert "memory" in c["resources"]["limits"], c["name"]


def test_csidriver_matches_what_the_plugin_needs(full: list[Doc]) -> None:
    spec = by(full, "CSIDriver", DRIVER)["spec"]
    assert spec["attachRequired"] is False
    assert spec["podInfoOnMount"] is True
    assert spec["volumeLifecycleModes"] == ["Ephemeral"]
    assert spec["requiresRepublish"] is True
    assert {"audience": "api://AzureADTokenExchange"} in spec["tokenRequests"]


def test_node_plugin_flags_parse_and_point_at_the_mounted_host_paths(full: list[Doc]) -> None:
    ds = by(full, "DaemonSet", "kv-csi-node")
    spec = pod_spec(ds)
    (c,) = spec["containers"]
    assert c["image"] == IMAGE
    assert spec["hostNetwork"] is True  # NMI answers on the node's 127.0.0.1 only
    assert {"operator": "Exists"} in spec["tolerations"]

    # The flags, as the container's entrypoint gets them, parse with the daemon's own parser.
    env = {e["name"]: e for e in c["env"]}
    assert env["KUBE_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    args = [a.replace("$(KUBE_NODE_NAME)", "node-0") for a in c["args"]]
    settings = parse_settings(args)
    assert settings.node_id == "node-0"
    assert settings.driver_name == DRIVER
    assert settings.rotation_poll_interval == 120

    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    paths = host_paths(spec)

    def host_path_of(container_path: str) -> str:
        """Where a container path lives on the node, through the hostPath mounts."""
        for mount_path, mount in mounts.items():
            if container_path == mount_path or container_path.startswith(mount_path + "/"):
                base = str(paths[mount["name"]]["path"]).rstrip("/")
                return base + container_path[len(mount_path) :]
        raise AssertionError(f"{container_path} is on no hostPath mount")

    # kubelet dials the CSI socket at the advertised path; it must be the socket the plugin serves.
    assert settings.endpoint.startswith("unix://")
    socket = settings.endpoint.removeprefix("unix://")
    assert host_path_of(socket) == settings.kubelet_registration_path
    assert settings.kubelet_registration_path == f"/var/lib/kubelet/plugins/{DRIVER}/csi.sock"
    # The -reg.sock lands where kubelet's plugin watcher looks.
    assert settings.registration_dir is not None
    assert host_path_of(str(settings.registration_dir)) == "/var/lib/kubelet/plugins_registry"
    # Pods' volume directories, with the plugin's mounts propagated back to the host.
    pods = mounts["/var/lib/kubelet/pods"]
    assert pods["mountPropagation"] == "Bidirectional"
    assert paths[pods["name"]]["path"] == "/var/lib/kubelet/pods"
    # State on tmpfs (/run) and the FlexVolume bridge socket at the same path on the host, where
    # the shim run by kubelet connects.
    assert host_path_of(str(settings.state_dir)) == str(settings.state_dir)
    assert str(settings.state_dir).startswith("/run/")
    assert settings.flexvolume_socket is not None
    assert host_path_of(str(settings.flexvolume_socket)) == str(settings.flexvolume_socket)

    # Liveness on /healthz at the named metrics port the daemon listens on.
    port = int(settings.metrics_addr.rpartition(":")[2])
    (named,) = [p for p in c["ports"] if p["name"] == "metrics"]
    assert named["containerPort"] == port
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_only_the_node_plugin_is_privileged(full: list[Doc]) -> None:
    privileged = [
        (d["metadata"]["name"], c["name"])
        for d in full
        if d["kind"] in ("DaemonSet", "Deployment")
        for c in containers(d)
        if c.get("securityContext", {}).get("privileged")
    ]
    assert privileged == [("kv-csi-node", "kv-csi-driver")]
    (c,) = pod_spec(by(full, "DaemonSet", "kv-csi-node"))["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_node_plugin_reads_only_its_pods_and_writes_only_events(full: list[Doc]) -> None:
    """Issue 14, item 1: FlexVolume pod identity from the API server, with the least access."""
    ds = by(full, "DaemonSet", "kv-csi-node")
    spec = pod_spec(ds)
    assert spec["automountServiceAccountToken"] is True
    assert (
        by(full, "ServiceAccount", "kv-csi-node").get("automountServiceAccountToken") is not False
    )
    (c,) = spec["containers"]
    args = [a.replace("$(KUBE_NODE_NAME)", "node-0") for a in c["args"]]
    settings = parse_settings(args)
    assert settings.flexvolume_pod_source == "api"
    assert settings.kubeconfig is None  # in-cluster: the pod's service account
    bindings = [
        d for d in full
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and any(s["name"] == "kv-csi-node" for s in d.get("subjects", []))
    ]  # fmt: skip
    assert [b["roleRef"]["name"] for b in bindings] == ["kv-csi-node"]
    role = by(full, "ClusterRole", "kv-csi-node")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("",), ("pods",)): {"get", "list", "watch"},
        (("",), ("events",)): {"create", "patch"},
    }
    # The installer still talks to nobody.
    installer = by(full, "ServiceAccount", "kv-flexvolume-installer")
    assert installer["automountServiceAccountToken"] is False


def installer_dir(docs: list[Doc]) -> str:
    """The host directory the installer writes the shim into."""
    spec = pod_spec(by(docs, "DaemonSet", "kv-flexvolume-installer"))
    (install,) = spec["containers"]
    assert install["image"] == IMAGE
    assert install["command"][-1] == "/opt/kv-driver/flexvolume/install.sh"
    env = {e["name"]: e["value"] for e in install["env"]}
    (mount,) = [m for m in install["volumeMounts"] if m["mountPath"] == env["TARGET_DIR"]]
    # The host's /usr, read-only, only to check that the node has python3 for the shim.
    assert [m for m in install["volumeMounts"] if m is not mount] == [
        {"name": "host-usr", "mountPath": "/host/usr", "readOnly": True}
    ]
    assert env["KEEP_RUNNING"] == "true"  # a DaemonSet pod must stay Running
    return str(host_paths(spec)[mount["name"]]["path"])


def test_flexvolume_installer_targets_aks_by_default_and_upstream_with_the_component(
    full: list[Doc], tmp_path: Path, validators: Any
) -> None:
    assert installer_dir(full) == AKS_PLUGIN_DIR
    overlay = build(upstream_dir_overlay(tmp_path))
    assert installer_dir(overlay) == UPSTREAM_PLUGIN_DIR
    for doc in overlay:
        validate(doc, validators)


def test_pod_identity_is_wired_to_its_own_namespace(full: list[Doc]) -> None:
    nmi = pod_spec(by(full, "DaemonSet", "aad-pod-identity-nmi"))
    assert nmi["hostNetwork"] is True
    (c,) = nmi["containers"]
    assert c["image"] == IMAGE and c["command"] == ["kv-nmi"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # The flags parse with NMI's own parser, and mean what the driver expects: 127.0.0.1:2579.
    settings = nmi_settings([a.replace("$(NODE_NAME)", "node-0") for a in c["args"]])
    assert (settings.node, settings.listen_address, settings.port) == ("node-0", "127.0.0.1", 2579)
    assert settings.iptables and not settings.cluster_wide
    probe = c["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert settings.probe_address.endswith(f":{ports[probe['port']]}")
    assert set(c["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "NET_RAW"}


def test_nmi_may_only_read_what_it_uses(full: list[Doc]) -> None:
    role = by(full, "ClusterRole", "aad-pod-identity-nmi")
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert verbs <= {"get", "list", "watch"}
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("",), ("secrets",))] == {"get"}
    assert rules[(("",), ("pods",))] == {"list", "watch"}


def test_mic_can_reach_imds_through_its_exception(full: list[Doc]) -> None:
    mic = by(full, "Deployment", "aad-pod-identity-mic")
    exception = by(full, "AzurePodIdentityException", "mic-exception")
    assert exception["metadata"]["namespace"] == mic["metadata"]["namespace"]
    labels = mic["spec"]["template"]["metadata"]["labels"]
    assert exception["spec"]["podLabels"].items() <= labels.items()


def test_examples_cover_every_way_to_authenticate() -> None:
    by_name = {p.name: load_docs(p) for p in EXAMPLES}
    seed = by(by_name["flexvolume-pod-identity.yaml"], "Pod", "nginx-flex-kv-podid")
    (c,) = seed["spec"]["containers"]
    assert c["volumeMounts"][0]["mountPath"] == "/kvmnt"
    (volume,) = seed["spec"]["volumes"]
    assert volume["flexVolume"]["driver"] == "azure/kv"
    assert volume["flexVolume"]["options"]["usepodidentity"] == "true"
    binding = by(
        by_name["flexvolume-pod-identity.yaml"], "AzureIdentityBinding", "kv-reader-binding"
    )
    assert seed["metadata"]["labels"]["aadpodidbinding"] == binding["spec"]["selector"]

    csi_volumes = {
        name: v["csi"]
        for name, docs in by_name.items()
        for d in docs
        if d["kind"] == "Pod"
        for v in d["spec"]["volumes"]
        if "csi" in v
    }
    assert set(csi_volumes) == {
        "csi-pod-identity.yaml",
        "csi-service-principal.yaml",
        "csi-workload-identity.yaml",
    }
    for volume in csi_volumes.values():
        assert volume["driver"] == DRIVER and volume["readOnly"] is True
    assert (
        csi_volumes["csi-service-principal.yaml"]["nodePublishSecretRef"]["name"] == "kv-sp-creds"
    )
    assert "clientID" in csi_volumes["csi-workload-identity.yaml"]["volumeAttributes"]
    flex_secret = by(by_name["flexvolume-service-principal.yaml"], "Secret", "kvcreds")
    assert flex_secret["type"] == "azure/kv"  # kubelet passes FlexVolume secrets of this type only


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed"
)
@pytest.mark.parametrize("target", ["deploy", "deploy/driver"])
def test_kubectl_kustomize_renders_the_same_objects(target: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", target], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    ours = build(REPO / target)
    assert sorted(map(ident, rendered)) == sorted(map(ident, ours))
    assert sorted(rendered, key=ident) == sorted(ours, key=ident)


def test_mic_is_ours_and_its_rbac_grants_exactly_what_it_uses(full: list[Doc]) -> None:
    from podidentity.mic.app import RBAC
    from podidentity.mic.settings import parse_settings

    mic = by(full, "Deployment", "aad-pod-identity-mic")
    assert mic["spec"]["replicas"] == 2
    (c,) = pod_spec(mic)["containers"]
    assert c["image"] == IMAGE and c["command"] == ["kv-mic"]
    settings = parse_settings(c["args"])  # every flag is one MIC knows
    assert str(settings.cloud_config) == "/etc/kubernetes/azure.json"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"MIC_POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}

    granted: dict[tuple[str, str], set[str]] = {}
    for kind, name in (("ClusterRole", "aad-pod-identity-mic"),
                       ("Role", "aad-pod-identity-mic-leader")):  # fmt: skip
        for rule in by(full, kind, name)["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == {k: set(v) for k, v in RBAC.items()}
    lease_rules = by(full, "Role", "aad-pod-identity-mic-leader")["rules"]
    assert {"resourceNames": ["aad-pod-identity-mic"]}.items() <= lease_rules[1].items()
    bound = {(d["kind"], d["roleRef"]["name"]) for d in full
             if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
             and any(s["name"] == "aad-pod-identity-mic" for s in d["subjects"])}  # fmt: skip
    assert bound == {("ClusterRoleBinding", "aad-pod-identity-mic"),
                     ("RoleBinding", "aad-pod-identity-mic-leader")}  # fmt: skip
