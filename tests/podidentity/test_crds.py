"""The aad-pod-identity CRDs and their typed values: the manifests follow the published v1
definitions field for field, a real API server accepts them and the objects users write, and
the values parse camelCase and (with a warning) the pre-v1.6 capitalised spellings."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.cluster.apiserver import ApiServer
from kube.client import load_config, make_client
from podidentity.crds import (
    AssignedState,
    AzureAssignedIdentity,
    AzureIdentity,
    AzureIdentityBinding,
    AzurePodIdentityException,
    IdentityType,
    Meta,
    SecretRef,
)
from podidentity.crds.resources import (
    CRD_MANIFEST,
    AzureAssignedIdentityResource,
    AzureIdentityResource,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOYED = REPO / "deploy" / "components" / "pod-identity" / "crds.yaml"

# The published v1.8.17 definitions (config/crd/aadpodidentity.k8s.io.yaml), written down as
# (path, type[, format][, flags]) rows: every property, nothing more.
_IDENTITY_SPEC = [
    ("adEndpoint", "string"), ("adResourceID", "string"),
    ("auxiliaryTenantIDs", "array nullable"), ("auxiliaryTenantIDs[]", "string"),
    ("clientID", "string"), ("clientPassword", "object"), ("clientPassword.name", "string"),
    ("clientPassword.namespace", "string"), ("metadata", "object"),
    ("replicas", "integer int32 nullable"), ("resourceID", "string"), ("tenantID", "string"),
    ("type", "integer"),
]  # fmt: skip
_BINDING_SPEC = [
    ("azureIdentity", "string"), ("metadata", "object"), ("selector", "string"),
    ("weight", "integer"),
]  # fmt: skip
_REPLICA_STATUS = [("availableReplicas", "integer int32"), ("metadata", "object")]


def _top(spec: list[tuple[str, str]], status: list[tuple[str, str]]) -> list[tuple[str, str]]:
    rows = [("", "object"), ("apiVersion", "string"), ("kind", "string"), ("metadata", "object")]
    rows += [("spec", "object")] + [(f"spec.{p}", t) for p, t in spec]
    rows += [("status", "object")] + [(f"status.{p}", t) for p, t in status]
    return rows


def _embedded(prefix: str, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(prefix if p == "" else f"{prefix}.{p}", t + (" embedded" if p == "" else ""))
            for p, t in rows]  # fmt: skip


PUBLISHED = {
    "AzureIdentity": _top(_IDENTITY_SPEC, _REPLICA_STATUS),
    "AzureIdentityBinding": _top(_BINDING_SPEC, _REPLICA_STATUS),
    "AzureAssignedIdentity": _top(
        [
            *_embedded("azureBindingRef", _top(_BINDING_SPEC, _REPLICA_STATUS)),
            *_embedded("azureIdentityRef", _top(_IDENTITY_SPEC, _REPLICA_STATUS)),
            ("metadata", "object"),
            ("nodename", "string"),
            ("pod", "string"),
            ("podNamespace", "string"),
            ("replicas", "integer int32 nullable"),
        ],
        [*_REPLICA_STATUS, ("status", "string")],
    ),
    "AzurePodIdentityException": _top(
        [("metadata", "object"), ("podLabels", "object"), ("podLabels{}", "string")],
        [("metadata", "object"), ("status", "string")],
    ),
}


def _flatten(schema: Mapping[str, Any], path: str = "") -> list[tuple[str, str]]:
    kind = [schema["type"]]
    if "format" in schema:
        kind.append(schema["format"])
    if schema.get("nullable"):
        kind.append("nullable")
    if schema.get("x-kubernetes-embedded-resource"):
        kind.append("embedded")
    assert "required" not in schema, f"{path or '<root>'}: the published schema requires nothing"
    assert "x-kubernetes-preserve-unknown-fields" not in schema, path
    rows = [(path, " ".join(kind))]
    for name, sub in sorted((schema.get("properties") or {}).items()):
        rows += _flatten(sub, f"{path}.{name}" if path else name)
    if "items" in schema:
        rows += _flatten(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        rows += _flatten(schema["additionalProperties"], f"{path}{{}}")
    return rows


def _crds() -> dict[str, Mapping[str, Any]]:
    return {d["spec"]["names"]["kind"]: d for d in yaml.safe_load_all(DEPLOYED.read_text())}


def test_crd_manifests_follow_the_published_definitions_field_for_field() -> None:
    crds = _crds()
    assert set(crds) == set(PUBLISHED)
    for kind, crd in crds.items():
        spec = crd["spec"]
        assert spec["group"] == "aadpodidentity.k8s.io" and spec["scope"] == "Namespaced"
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.aadpodidentity.k8s.io"
        [version] = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
        got = _flatten(version["schema"]["openAPIV3Schema"])
        assert sorted(got) == sorted(PUBLISHED[kind]), kind


def test_the_packaged_copy_is_the_deployed_manifest() -> None:
    assert CRD_MANIFEST.read_text() == DEPLOYED.read_text()


def _identity(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
        "metadata": {"name": "id-a", "namespace": "apps", "resourceVersion": "7"},
        "spec": spec,
    }  # fmt: skip


def test_identity_parses_camel_case_and_round_trips() -> None:
    raw = _identity(
        type=1, clientID="cid", tenantID="tid",
        clientPassword={"name": "sp", "namespace": "apps"}, auxiliaryTenantIDs=["t2"],
    )  # fmt: skip
    identity = AzureIdentity.parse(raw)
    assert identity.type is IdentityType.SERVICE_PRINCIPAL
    assert identity.client_password == SecretRef("sp", "apps")
    assert identity.auxiliary_tenant_ids == ("t2",)
    assert AzureIdentity.parse(identity.to_api()) == identity


def test_legacy_capitalised_fields_are_read_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        identity = AzureIdentity.parse(_identity(type=0, ResourceID="/subs/x", ClientID="cid"))
        binding = AzureIdentityBinding.parse(
            {"metadata": {"name": "b", "namespace": "apps"},
             "spec": {"AzureIdentity": "id-a", "Selector": "web"}}
        )  # fmt: skip
    assert (identity.resource_id, identity.client_id) == ("/subs/x", "cid")
    assert (binding.azure_identity, binding.selector) == ("id-a", "web")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "'ClientID' -> 'clientID', 'ResourceID' -> 'resourceID'" in warnings[0]


def test_a_bad_identity_type_names_the_object_and_the_values() -> None:
    with pytest.raises(ValueError, match=r"apps/id-a: spec.type 'three' is not 0"):
        AzureIdentity.parse(_identity(type="three"))


def test_binding_and_exception_matching_follow_upstream() -> None:
    binding = AzureIdentityBinding(Meta("apps", "b"), "id-a", "web")
    assert binding.matches({"aadpodidbinding": "web"})
    assert not binding.matches({"aadpodidbinding": "Web"})
    assert not AzureIdentityBinding(Meta("apps", "b"), "id-a", "").matches({"aadpodidbinding": ""})
    exception = AzurePodIdentityException(Meta("apps", "e"), {"app": "mic", "tier": "x"})
    assert exception.matches({"app": "MIC"})
    assert not exception.matches({"other": "mic"})


def test_assigned_state_blank_counts_as_assigned() -> None:
    assert AssignedState("").usable and AssignedState("Assigned").usable
    assert not AssignedState("Created").usable


@pytest.fixture(scope="module")
def crds_installed(apiserver: ApiServer) -> Iterator[ApiServer]:
    apiserver.kubectl("apply", "-f", str(DEPLOYED))
    apiserver.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        *(f"crd/{d['metadata']['name']}" for d in yaml.safe_load_all(DEPLOYED.read_text())),
    )  # fmt: skip
    apiserver.kubectl("create", "namespace", "crd-tests", check=False)
    yield apiserver


def test_the_api_server_stores_what_users_write_and_prunes_capitalised_fields(
    crds_installed: ApiServer,
) -> None:
    api = crds_installed
    client = make_client(load_config(api.kubeconfig))
    objects = [
        {**_identity(type=0, resourceID="/subscriptions/s/id", clientID="cid"),
         "metadata": {"name": "camel", "namespace": "crd-tests"}},
        {**_identity(type=0, ResourceID="/subscriptions/s/id", ClientID="cid"),
         "metadata": {"name": "legacy", "namespace": "crd-tests"}},
    ]  # fmt: skip
    # kubectl refuses the capitalised names itself now; older clients sent them, and the API
    # server dropped them: what --validate=false shows.
    # (The schema reaches kubectl through the OpenAPI document a moment after the CRD is
    # established: dry runs until it shows.)
    deadline = time.monotonic() + 60
    while True:
        refused = api.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(objects[1]), check=False
        )
        if refused.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert 'unknown field "ResourceID"' in refused.stderr
    api.kubectl("apply", "--validate=false", "-f", "-", input=yaml.safe_dump_all(objects))
    camel = AzureIdentity.parse(client.get(AzureIdentityResource, "camel", namespace="crd-tests"))
    legacy = AzureIdentity.parse(client.get(AzureIdentityResource, "legacy", namespace="crd-tests"))
    assert (camel.resource_id, camel.client_id) == ("/subscriptions/s/id", "cid")
    # The structural CRD drops the pre-v1.6 names, as upstream's does: the identity is empty.
    assert (legacy.resource_id, legacy.client_id) == ("", "")


def test_an_assigned_identity_written_from_values_reads_back_equal(
    crds_installed: ApiServer,
) -> None:
    api = crds_installed
    client = make_client(load_config(api.kubeconfig))
    identity = AzureIdentity(
        Meta("crd-tests", "id-a", resource_version="3"), IdentityType.USER_ASSIGNED_MSI, "cid",
        resource_id="/subscriptions/s/resourcegroups/rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/id-a",
    )  # fmt: skip
    binding = AzureIdentityBinding(Meta("crd-tests", "bind-a"), "id-a", "web")
    assigned = AzureAssignedIdentity(
        Meta("crd-tests", "web-0-crd-tests-id-a", labels={"nodename": "node-a"},
             annotations={"aadpodidentity.k8s.io/pod-uid": "u-1"}),
        identity, binding, "web-0", "crd-tests", "node-a", AssignedState.CREATED,
    )  # fmt: skip
    api.kubectl("apply", "-f", "-", input=json.dumps(assigned.to_api()))
    back = AzureAssignedIdentity.parse(
        client.get(AzureAssignedIdentityResource, assigned.meta.name, namespace="crd-tests")
    )
    assert back.identity == identity and back.binding == binding
    assert (back.pod, back.pod_namespace, back.node_name) == ("web-0", "crd-tests", "node-a")
    assert back.state is AssignedState.CREATED and back.pod_uid == "u-1"
