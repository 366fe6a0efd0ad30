"""deploy/secrets-store-provider/: kv-driver as the secrets-store CSI driver's Azure provider is
valid for the API server and wired where the upstream driver looks for provider "azure"."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from driver.config import parse_settings
from tests.deploy.manifest_checks import DEPLOY, IMAGE, K8S_VERSIONS, REPO, by, host_paths, ident
from tests.deploy.manifests import Doc, build, containers, pod_spec

PROVIDERS_DIR = "/var/run/secrets-store-csi-providers"  # the driver's --provider-volume default


@pytest.fixture(scope="module")
def provider() -> list[Doc]:
    return build(DEPLOY / "secrets-store-provider")


def test_every_object_validates(provider: list[Doc]) -> None:
    assert sorted(ident(d) for d in provider) == [
        ("DaemonSet", "kube-system", "kv-secrets-store-provider"),
        ("ServiceAccount", "kube-system", "kv-secrets-store-provider"),
    ]
    for doc in provider:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kv-driver"
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_socket_is_where_the_secrets_store_driver_dials_provider_azure(
    provider: list[Doc],
) -> None:
    spec = pod_spec(by(provider, "DaemonSet", "kv-secrets-store-provider"))
    (c,) = spec["containers"]
    assert c["image"] == IMAGE
    settings = parse_settings([a.replace("$(KUBE_NODE_NAME)", "node-0") for a in c["args"]])
    assert settings.provider_socket is not None
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    paths = host_paths(spec)
    (name,) = [n for n, p in mounts.items() if settings.provider_socket.parent.as_posix() == p]
    assert paths[name]["path"] == PROVIDERS_DIR
    assert settings.provider_socket.name == "azure.sock"
    # Nothing else of the node: its own CSI socket and state stay inside the pod.
    assert set(paths) == {name}
    assert settings.registration_dir is None and settings.flexvolume_socket is None
    assert settings.rotation_poll_interval == 0
    assert settings.provider_fresh_for == 30


def test_the_provider_is_not_privileged_and_uses_the_hosts_network(provider: list[Doc]) -> None:
    ds = by(provider, "DaemonSet", "kv-secrets-store-provider")
    spec = pod_spec(ds)
    assert spec["hostNetwork"] is True  # NMI answers on the node's 127.0.0.1 only; IMDS
    assert spec["automountServiceAccountToken"] is False
    for c in containers(ds):
        security = c["securityContext"]
        assert security["privileged"] is False
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert all("mountPropagation" not in m for m in c["volumeMounts"])


def test_its_port_differs_from_the_node_plugins_on_the_same_host_network(
    provider: list[Doc],
) -> None:
    def port(docs: list[Doc], name: str) -> int:
        (c,) = pod_spec(by(docs, "DaemonSet", name))["containers"]
        settings = parse_settings([a.replace("$(KUBE_NODE_NAME)", "n") for a in c["args"]])
        (named,) = [p for p in c["ports"] if p["name"] == "metrics"]
        assert named["containerPort"] == int(settings.metrics_addr.rpartition(":")[2])
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        return int(named["containerPort"])

    node = port(build(DEPLOY / "driver"), "kv-csi-node")
    ours = port(provider, "kv-secrets-store-provider")
    assert ours != node and ours not in (8898, 8989)  # nor provider-azure's, for a switch-over


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed"
)
def test_kubectl_kustomize_renders_the_same_objects(provider: list[Doc]) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", "deploy/secrets-store-provider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted(rendered, key=ident) == sorted(provider, key=ident)
