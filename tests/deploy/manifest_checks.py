"""Paths and checks shared by the deploy/ manifest tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.manifests import (
    Doc,
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


def host_paths(spec: Doc) -> dict[str, Doc]:
    return {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
