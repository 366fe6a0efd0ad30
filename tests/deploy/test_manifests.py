"""deploy/: every object is valid for the API server, and the node plugin is wired as kubelet needs."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from driver.config import parse_settings
from tests.deploy.manifests import (
    CLUSTER_SCOPED,
    Doc,
    build,
    containers,
    crd_validators,
    load_docs,
    pod_spec,
)

# The oldest Kubernetes minor we support and the newest whose schemas kubernetes-validate ships
# at the time of writing; a field missing from either fails.
K8S_VERSIONS = ("1.30.0", "1.33.0")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = sorted((DEPLOY / "examples").glob("*.yaml"))
IMAGE = "ghcr.io/kv-driver/kv-driver:0.1.0"
DRIVER = "kv.csi.azure.com"
AKS_PLUGIN_DIR = "/etc/kubernetes/volumeplugins"
UPSTREAM_PLUGIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"


def upstream_dir_overlay(tmp_path: Path) -> Path:
    """A user's kustomization: the driver plus the upstream-plugin-dir component."""
    overlay = tmp_path / "overlay"
    shutil.copytree(DEPLOY, overlay / "deploy")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["deploy/driver"],
                "components": ["deploy/components/flexvolume-upstream-dir"],
            }
        )
    )
    return overlay


@pytest.fixture(scope="module")
def full() -> list[Doc]:
    return build(DEPLOY)


@pytest.fixture(scope="module")
def driver_only() -> list[Doc]:
    return build(DEPLOY / "driver")


@pytest.fixture(scope="module")
def validators(full: list[Doc]) -> dict[tuple[str, str], jsonschema.Validator]:
    return crd_validators(d for d in full if d["kind"] == "CustomResourceDefinition")


def by(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def validate(doc: Doc, validators: dict[tuple[str, str], jsonschema.Validator]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in validators:
        validators[key].validate(doc)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def ident(doc: Doc) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


# --- schema validity --------------------------------------------------------------------------


def test_every_object_of_the_full_install_validates(full: list[Doc], validators: Any) -> None:
    kinds = {d["kind"] for d in full}
    assert {"CSIDriver", "DaemonSet", "Deployment", "CustomResourceDefinition"} <= kinds
    assert "AzurePodIdentityException" in kinds
    for doc in full:
        validate(doc, validators)


def test_driver_only_install_validates_and_leaves_pod_identity_out(
    driver_only: list[Doc], validators: Any
) -> None:
    for doc in driver_only:
        validate(doc, validators)
    assert not [d for d in driver_only if "aad-pod-identity" in d["metadata"]["name"]]
    assert not [d for d in driver_only if d["apiVersion"].startswith("aadpodidentity")]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(example: Path, validators: Any) -> None:
    docs = load_docs(example)
    assert docs
    for doc in docs:
        validate(doc, validators)


def test_strict_validation_rejects_an_unknown_field(full: list[Doc]) -> None:
    ds = copy.deepcopy(by(full, "DaemonSet", "kv-csi-node"))
    ds["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSIONS[0], strict=True)


def test_crd_schemas_reject_capitalised_fields_and_nothing_users_already_have(
    validators: Any,
) -> None:
    identity = load_docs(DEPLOY / "examples" / "flexvolume-pod-identity.yaml")[0]
    check = validators[("aadpodidentity.k8s.io/v1", "AzureIdentity")]
    check.validate(identity)

    # The pre-v1.6 capitalised spelling would be pruned by the API server: refuse it here.
    legacy = copy.deepcopy(identity)
    legacy["spec"]["ResourceID"] = legacy["spec"].pop("resourceID")
    with pytest.raises(jsonschema.ValidationError):
        check.validate(legacy)

    # Like the published definitions, the schemas require no field and check no range (a
    # stricter CRD would refuse objects users already have); NMI and MIC report a bad `type`
    # or an empty selector on the object itself (tests/podidentity/test_crds.py).
    bad_type = copy.deepcopy(identity)
    bad_type["spec"]["type"] = 3
    check.validate(bad_type)


def test_crds_cover_the_aad_pod_identity_api(full: list[Doc]) -> None:
    crds = {d["spec"]["names"]["kind"]: d for d in full if d["kind"] == "CustomResourceDefinition"}
    assert set(crds) == {
        "AzureIdentity",
        "AzureIdentityBinding",
        "AzureAssignedIdentity",
        "AzurePodIdentityException",
    }
    for kind, crd in crds.items():
        assert crd["spec"]["group"] == "aadpodidentity.k8s.io"
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.aadpodidentity.k8s.io"
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"], kind
    spec = crds["AzureIdentity"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fields = set(spec["properties"]["spec"]["properties"])
    assert {"type", "resourceID", "clientID", "clientPassword", "tenantID"} <= fields
    assert {"auxiliaryTenantIDs", "adResourceID", "adEndpoint", "replicas"} <= fields


def test_an_assigned_identity_as_mic_writes_it_validates(full: list[Doc], validators: Any) -> None:
    identity, binding, _ = load_docs(DEPLOY / "examples" / "flexvolume-pod-identity.yaml")
    assigned = {
        "apiVersion": "aadpodidentity.k8s.io/v1",
        "kind": "AzureAssignedIdentity",
        "metadata": {
            "name": "nginx-flex-kv-podid-default-kv-reader",
            "namespace": "default",
            "labels": {"nodename": "node-0"},
            "finalizers": ["azureassignedidentity.finalizers.aadpodidentity.k8s.io"],
        },
        "spec": {
            "azureIdentityRef": {
                **identity,
                "metadata": {**identity["metadata"], "resourceVersion": "7"},
            },
            "azureBindingRef": binding,
            "pod": "nginx-flex-kv-podid",
            "podNamespace": "default",
            "nodename": "node-0",
        },
        "status": {"status": "Assigned", "availableReplicas": 1},
    }
    validators[("aadpodidentity.k8s.io/v1", "AzureAssignedIdentity")].validate(assigned)


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
    assert images == {
        IMAGE,
        "mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17",
    }
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


def host_paths(spec: Doc) -> dict[str, Doc]:
    return {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}


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


def test_node_plugin_needs_no_api_access(full: list[Doc]) -> None:
    spec = pod_spec(by(full, "DaemonSet", "kv-csi-node"))
    assert spec["automountServiceAccountToken"] is False
    bound = {s["name"] for d in full for s in d.get("subjects", [])}
    assert "kv-csi-node" not in bound


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
    env = {e["name"]: e for e in c["env"]}
    assert "--MICNamespace=$(POD_NAMESPACE)" in c["args"]
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert set(c["securityContext"]["capabilities"]["add"]) == {
        "NET_ADMIN",
        "NET_RAW",
        "DAC_READ_SEARCH",
    }

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
