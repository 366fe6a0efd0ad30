"""The four `aadpodidentity.k8s.io/v1` kinds as frozen values, parsed from API objects (dicts).

Parsing is lenient the way the published CRD is (no field is required there): a missing field
becomes its empty value, and the component that needs it says so. camelCase names are the
API's; the capitalised pre-1.6 spellings (`ClientID`, `ResourceID`, `Selector`, ...) are still
read, with one warning per object, because objects embedded in AzureAssignedIdentities or read
from non-structural copies can carry them (the structural CRD itself prunes them on write).

`to_api()` gives back the object as the API stores it (MIC embeds identities and bindings in the
AzureAssignedIdentities it writes, the way upstream does).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

log = logging.getLogger(__name__)

GROUP = "aadpodidentity.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

BINDING_LABEL = "aadpodidbinding"
"""The pod label whose value is compared with `AzureIdentityBinding.spec.selector`."""
BEHAVIOR_ANNOTATION = "aadpodidentity.k8s.io/Behavior"
"""`namespaced` on an AzureIdentity: only pods in its namespace may use it (upstream's opt-in)."""
NODE_LABEL = "nodename"
"""The label MIC puts on AzureAssignedIdentities: NMI watches only its own node's."""
POD_UID_ANNOTATION = "aadpodidentity.k8s.io/pod-uid"
"""Ours: the UID of the pod an AzureAssignedIdentity was written for. MIC sets it; NMI then
matches by UID, so a recreated pod with the same name never sees its predecessor's entries.
Objects without it (upstream MIC) are matched by pod name and namespace."""
ASSIGNED_FINALIZER = "azureassignedidentity.finalizers.aadpodidentity.k8s.io"

# camelCase (the API's) -> the capitalised spelling that manifests older than v1.6 used.
_LEGACY = {
    "type": "Type",
    "resourceID": "ResourceID",
    "clientID": "ClientID",
    "clientPassword": "ClientPassword",
    "tenantID": "TenantID",
    "auxiliaryTenantIDs": "AuxiliaryTenantIDs",
    "adResourceID": "ADResourceID",
    "adEndpoint": "ADEndpoint",
    "azureIdentity": "AzureIdentity",
    "selector": "Selector",
    "weight": "Weight",
    "podLabels": "PodLabels",
}


class IdentityType(IntEnum):
    """`AzureIdentity.spec.type`."""

    USER_ASSIGNED_MSI = 0
    SERVICE_PRINCIPAL = 1
    SERVICE_PRINCIPAL_CERTIFICATE = 2


class AssignedState(StrEnum):
    """`AzureAssignedIdentity.status.status`. "" comes from MIC versions that wrote none and is
    treated like Assigned, as upstream does."""

    NONE = ""
    CREATED = "Created"
    ASSIGNED = "Assigned"
    UNASSIGNED = "Unassigned"

    @property
    def usable(self) -> bool:
        return self in (AssignedState.NONE, AssignedState.ASSIGNED)


@dataclass(frozen=True)
class Meta:
    """The object metadata the components use."""

    namespace: str
    name: str
    uid: str = ""
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> Meta:
        meta = obj.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.uid:
            out["uid"] = self.uid
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


class _Spec:
    """Reads one spec, camelCase first, then the legacy spelling (one warning per object)."""

    def __init__(self, kind: str, obj: Mapping[str, Any], key: str = "spec") -> None:
        self._spec: Mapping[str, Any] = obj.get(key) or {}
        legacy = sorted(
            (old, new)
            for new, old in _LEGACY.items()
            if old in self._spec and new not in self._spec
        )
        if legacy:
            renames = ", ".join(f"{old!r} -> {new!r}" for old, new in legacy)
            log.warning(
                "%s %s uses pre-v1.6 field names (%s); rename them: the v1 CRD drops "
                "capitalised names, so the API server does not keep them",
                kind, Meta.parse(obj).ref, renames,
            )  # fmt: skip

    def get(self, name: str) -> Any:
        if name in self._spec:
            return self._spec[name]
        legacy = _LEGACY.get(name)
        return self._spec.get(legacy) if legacy else None

    def str(self, name: str) -> str:
        value = self.get(name)
        return "" if value is None else str(value)


@dataclass(frozen=True)
class SecretRef:
    """`clientPassword`: where a service principal's credential lives."""

    name: str
    namespace: str


@dataclass(frozen=True)
class AzureIdentity:
    """An Azure identity pods may use. No secret value is ever held here, only where it is."""

    meta: Meta
    type: IdentityType
    client_id: str
    resource_id: str = ""
    tenant_id: str = ""
    client_password: SecretRef | None = None
    auxiliary_tenant_ids: tuple[str, ...] = ()
    ad_endpoint: str = ""
    ad_resource_id: str = ""

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> AzureIdentity:
        spec = _Spec("AzureIdentity", obj)
        raw_type = spec.get("type")
        try:
            kind = IdentityType(int(raw_type or 0))
        except (TypeError, ValueError):
            raise ValueError(
                f"AzureIdentity {Meta.parse(obj).ref}: spec.type {raw_type!r} is not 0 "
                "(user-assigned identity), 1 (service principal with a secret) or 2 (service "
                "principal with a certificate)"
            ) from None
        password = spec.get("clientPassword") or {}
        secret = (
            SecretRef(str(password.get("name") or ""), str(password.get("namespace") or ""))
            if isinstance(password, Mapping) and password.get("name")
            else None
        )
        return cls(
            meta=Meta.parse(obj),
            type=kind,
            client_id=spec.str("clientID"),
            resource_id=spec.str("resourceID"),
            tenant_id=spec.str("tenantID"),
            client_password=secret,
            auxiliary_tenant_ids=tuple(str(t) for t in spec.get("auxiliaryTenantIDs") or ()),
            ad_endpoint=spec.str("adEndpoint"),
            ad_resource_id=spec.str("adResourceID"),
        )

    @property
    def namespaced(self) -> bool:
        """Whether upstream's per-identity opt-in to namespaced matching is set."""
        return self.meta.annotations.get(BEHAVIOR_ANNOTATION, "").lower() == "namespaced"

    def to_api(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": int(self.type), "clientID": self.client_id}
        if self.resource_id:
            spec["resourceID"] = self.resource_id
        if self.tenant_id:
            spec["tenantID"] = self.tenant_id
        if self.client_password is not None:
            spec["clientPassword"] = {
                "name": self.client_password.name,
                "namespace": self.client_password.namespace,
            }
        if self.auxiliary_tenant_ids:
            spec["auxiliaryTenantIDs"] = list(self.auxiliary_tenant_ids)
        if self.ad_endpoint:
            spec["adEndpoint"] = self.ad_endpoint
        if self.ad_resource_id:
            spec["adResourceID"] = self.ad_resource_id
        return {
            "apiVersion": API_VERSION,
            "kind": "AzureIdentity",
            "metadata": self.meta.to_api(),
            "spec": spec,
        }


@dataclass(frozen=True)
class AzureIdentityBinding:
    """Pods labelled `aadpodidbinding: <selector>` may use the identity `azure_identity`."""

    meta: Meta
    azure_identity: str
    selector: str
    weight: int = 0

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> AzureIdentityBinding:
        spec = _Spec("AzureIdentityBinding", obj)
        try:
            weight = int(spec.get("weight") or 0)
        except (TypeError, ValueError):
            weight = 0
        return cls(
            meta=Meta.parse(obj),
            azure_identity=spec.str("azureIdentity"),
            selector=spec.str("selector"),
            weight=weight,
        )

    def matches(self, pod_labels: Mapping[str, str]) -> bool:
        """Exact string equality with the pod's `aadpodidbinding` label, as upstream."""
        return bool(self.selector) and pod_labels.get(BINDING_LABEL) == self.selector

    def to_api(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"azureIdentity": self.azure_identity, "selector": self.selector}
        if self.weight:
            spec["weight"] = self.weight
        return {
            "apiVersion": API_VERSION,
            "kind": "AzureIdentityBinding",
            "metadata": self.meta.to_api(),
            "spec": spec,
        }


@dataclass(frozen=True)
class AzureAssignedIdentity:
    """One identity assigned to one pod on one node, written by MIC."""

    meta: Meta
    identity: AzureIdentity
    binding: AzureIdentityBinding
    pod: str
    pod_namespace: str
    node_name: str
    state: AssignedState = AssignedState.NONE

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> AzureAssignedIdentity:
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        raw_state = status.get("status") or status.get("Status") or ""
        try:
            state = AssignedState(raw_state)
        except ValueError:
            raise ValueError(
                f"AzureAssignedIdentity {Meta.parse(obj).ref}: status.status {raw_state!r} is "
                "not one of Created, Assigned, Unassigned"
            ) from None
        identity_raw = spec.get("azureIdentityRef") or {}
        binding_raw = spec.get("azureBindingRef") or {}
        return cls(
            meta=Meta.parse(obj),
            identity=AzureIdentity.parse(identity_raw),
            binding=AzureIdentityBinding.parse(binding_raw),
            pod=str(spec.get("pod") or ""),
            pod_namespace=str(spec.get("podNamespace") or ""),
            node_name=str(spec.get("nodename") or ""),
            state=state,
        )

    @property
    def pod_uid(self) -> str:
        """The pod's UID when MIC recorded it (ours does), else ""."""
        return self.meta.annotations.get(POD_UID_ANNOTATION, "")

    def to_api(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "AzureAssignedIdentity",
            "metadata": self.meta.to_api(),
            "spec": {
                "azureIdentityRef": self.identity.to_api(),
                "azureBindingRef": self.binding.to_api(),
                "pod": self.pod,
                "podNamespace": self.pod_namespace,
                "nodename": self.node_name,
            },
            "status": {"status": self.state.value, "availableReplicas": 1},
        }


@dataclass(frozen=True)
class AzurePodIdentityException:
    """Pods in this namespace with any one of these labels go to IMDS as the node."""

    meta: Meta
    pod_labels: Mapping[str, str]

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> AzurePodIdentityException:
        spec = _Spec("AzurePodIdentityException", obj)
        labels = spec.get("podLabels") or {}
        return cls(Meta.parse(obj), {str(k): str(v) for k, v in dict(labels).items()})

    def matches(self, pod_labels: Mapping[str, str]) -> bool:
        """Any one pair equal; the value compared case-insensitively (as upstream)."""
        return any(
            key in pod_labels and pod_labels[key].lower() == value.lower()
            for key, value in self.pod_labels.items()
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "AzurePodIdentityException",
            "metadata": self.meta.to_api(),
            "spec": {"podLabels": dict(self.pod_labels)},
        }
