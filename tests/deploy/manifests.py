"""Offline stand-ins for `kustomize build` and the API server's schema checks, for the tests.

Only what deploy/ uses is supported: resources (files and directories), components, a
`namespace` override, `labels` and JSON 6902 patches with replace/add/test ops.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

Doc = dict[str, Any]

CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "CSIDriver",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "StorageClass",
}


def load_docs(path: Path) -> list[Doc]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _kustomization(directory: Path) -> Doc:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            return load_docs(directory / name)[0]
    raise FileNotFoundError(f"no kustomization in {directory}")


def build(directory: Path) -> list[Doc]:
    """The objects `kubectl apply -k directory` would send, in order."""
    k = _kustomization(directory)
    docs: list[Doc] = []
    for entry in k.get("resources", []):
        target = directory / entry
        docs.extend(build(target) if target.is_dir() else load_docs(target))
    for entry in k.get("components", []):
        component = directory / entry
        kind = _kustomization(component).get("kind")
        assert kind == "Component", f"{component} is a {kind}, not a Component"
        docs = _apply(component, _kustomization(component), docs)
    return _apply(directory, k, docs)


def _apply(directory: Path, k: Doc, docs: list[Doc]) -> list[Doc]:
    """Apply one kustomization's own resources (components only), patches, labels, namespace."""
    docs = copy.deepcopy(docs)
    if k.get("kind") == "Component":
        for entry in k.get("resources", []):
            docs.extend(load_docs(directory / entry))
    for patch in k.get("patches", []):
        ops = yaml.safe_load(patch["patch"])
        hits = [d for d in docs if _targets(patch["target"], d)]
        assert hits, f"patch in {directory} matches nothing: {patch['target']}"
        for doc in hits:
            _json_patch(doc, ops)
    for label_set in k.get("labels", []):
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    if "namespace" in k:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = k["namespace"]
    return docs


def _targets(target: Doc, doc: Doc) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    wanted = {
        "group": group,
        "version": version,
        "kind": doc["kind"],
        "name": doc["metadata"]["name"],
    }
    return all(target[key] == value for key, value in wanted.items() if key in target)


def _json_patch(doc: Doc, ops: Iterable[Doc]) -> None:
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")
        ]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "test":
            assert node[key] == op["value"], f"patch test failed at {op['path']}"
        elif op["op"] in ("replace", "add"):
            if op["op"] == "replace":
                assert key in node if isinstance(node, dict) else key < len(node)
            node[key] = op["value"]
        else:
            raise NotImplementedError(op["op"])


def containers(doc: Doc) -> Iterator[Doc]:
    """Every container (init included) of a workload or Pod."""
    spec = doc["spec"]["template"]["spec"] if "template" in doc.get("spec", {}) else doc["spec"]
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"] if doc["kind"] != "Pod" else doc["spec"]
    return spec


# --- custom resources against their CRD's schema -----------------------------------------------


def strict_json_schema(node: Any) -> Any:
    """OpenAPI v3 (CRD dialect) -> JSON Schema that, like pruning, tolerates no unknown field.

    Objects with `properties` reject other keys unless marked x-kubernetes-preserve-unknown-fields;
    `nullable` becomes a null alternative.
    """
    if isinstance(node, list):
        return [strict_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: strict_json_schema(v)
        for k, v in node.items()
        if not k.startswith("x-kubernetes-") and k not in ("nullable", "format", "description")
    }
    if "properties" in node:
        out["properties"] = {k: strict_json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def crd_validators(crds: Iterable[Doc]) -> dict[tuple[str, str], jsonschema.Validator]:
    """(apiVersion, kind) -> validator for every served version of the given CRDs."""
    out: dict[tuple[str, str], jsonschema.Validator] = {}
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = strict_json_schema(version["schema"]["openAPIV3Schema"])
            # The API server checks object metadata itself; a name is always required.
            schema["properties"]["metadata"] = {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}},
            }
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
            out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = (
                jsonschema.Draft202012Validator(schema)
            )
    return out
