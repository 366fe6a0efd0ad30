"""deploy/: every object of every install is valid for the API server and for our CRDs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.manifest_checks import DEPLOY, EXAMPLES, K8S_VERSIONS, by, validate
from tests.deploy.manifests import (
    Doc,
    load_docs,
)

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
