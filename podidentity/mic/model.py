"""MIC's values and pure rules: what MIC keeps of pods and nodes, where a node's identities live in
ARM (a VM, or its scale set), and which AzureAssignedIdentities a pod should have.

No network and no clock here: `reconcile.py` feeds these functions from the caches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from podidentity.crds import (
    BEHAVIOR_ANNOTATION,
    BINDING_LABEL,
    AzureAssignedIdentity,
    AzureIdentity,
    AzureIdentityBinding,
    AzurePodIdentityException,
    IdentityType,
    Meta,
)

PodKey = tuple[str, str]
"""(namespace, name) of a pod."""

RESOURCE_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/"
    r"microsoft\.managedidentity/userassignedidentities/([^/]+)$",
    re.IGNORECASE,
)
_PROVIDER = re.compile(
    r"^azure:///subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.compute/"
    r"(?:virtualmachinescalesets/([^/]+)/virtualmachines/[^/]+|virtualmachines/([^/]+))$",
    re.IGNORECASE,
)
NAME_LIMIT = 253


@dataclass(frozen=True, order=True)
class Target:
    """The ARM resource that holds a node's identities: its VM, or the scale set of its instance.
    Every node of one scale set has the same Target, so their identities are one set."""

    subscription: str
    resource_group: str
    kind: str  # "vm" | "vmss"
    name: str

    def __str__(self) -> str:
        what = "scale set" if self.kind == "vmss" else "VM"
        return f"{what} {self.resource_group}/{self.name}"


def target_of(provider_id: str) -> Target | None:
    """The Target named by a node's `spec.providerID`; None when it is not an Azure one."""
    found = _PROVIDER.match(provider_id.strip())
    if found is None:
        return None
    subscription, group, scale_set, vm = found.groups()
    if scale_set:
        return Target(subscription.lower(), group.lower(), "vmss", scale_set.lower())
    return Target(subscription.lower(), group.lower(), "vm", vm.lower())


@dataclass(frozen=True)
class PodView:
    """A pod that carries the `aadpodidbinding` label, as far as MIC needs it."""

    namespace: str
    name: str
    uid: str
    node: str
    selector: str
    labels: tuple[tuple[str, str], ...]
    finished: bool

    @property
    def key(self) -> PodKey:
        return (self.namespace, self.name)


def project_pod(raw: Mapping[str, Any]) -> PodView | None:
    meta = raw.get("metadata") or {}
    labels = meta.get("labels") or {}
    if BINDING_LABEL not in labels:
        return None
    phase = (raw.get("status") or {}).get("phase") or ""
    return PodView(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        node=str((raw.get("spec") or {}).get("nodeName") or ""),
        selector=str(labels[BINDING_LABEL]),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        # A pod that ended needs no token any more: its identities can go.
        finished=phase in ("Succeeded", "Failed"),
    )


@dataclass(frozen=True)
class NodeView:
    name: str
    target: Target | None


def project_node(raw: Mapping[str, Any]) -> NodeView:
    meta = raw.get("metadata") or {}
    provider = str((raw.get("spec") or {}).get("providerID") or "")
    return NodeView(str(meta.get("name") or ""), target_of(provider))


@dataclass(frozen=True)
class Trimmed:
    """What an embedded reference keeps: no resourceVersion (a resync must not look like a
    change) and none of kubectl's bulky annotations."""

    @staticmethod
    def meta(meta: Meta) -> Meta:
        keep = {k: v for k, v in meta.annotations.items() if k == BEHAVIOR_ANNOTATION}
        return Meta(meta.namespace, meta.name, meta.uid, "", {}, keep)

    @staticmethod
    def identity(identity: AzureIdentity) -> AzureIdentity:
        return dataclasses.replace(identity, meta=Trimmed.meta(identity.meta))

    @staticmethod
    def binding(binding: AzureIdentityBinding) -> AzureIdentityBinding:
        return dataclasses.replace(binding, meta=Trimmed.meta(binding.meta))


@dataclass(frozen=True)
class Want:
    """One AzureAssignedIdentity that should exist: (pod, identity via binding) on a node."""

    name: str
    pod: PodView
    identity: AzureIdentity  # trimmed
    binding: AzureIdentityBinding  # trimmed
    target: Target | None  # None: nothing to attach in ARM (service principal identities)

    @property
    def namespace(self) -> str:
        return self.pod.namespace

    @property
    def resource_id(self) -> str:
        """The lower-cased ARM id to attach ("" when nothing is attached)."""
        return self.identity.resource_id.lower() if self.target is not None else ""

    def matches(self, observed: AzureAssignedIdentity) -> bool:
        """Whether `observed` already says what this want says (status aside)."""
        return (
            observed.pod == self.pod.name
            and observed.pod_namespace == self.pod.namespace
            and observed.node_name == self.pod.node
            and observed.pod_uid == self.pod.uid
            and Trimmed.identity(observed.identity) == self.identity
            and Trimmed.binding(observed.binding) == self.binding
        )


def assigned_name(pod_namespace: str, pod: str, identity_namespace: str, identity: str) -> str:
    """A name that two different (pod, identity) pairs never share.

    Upstream's `<pod>-<podNamespace>-<identity>` leaves the identity's namespace out (#1065) and
    is ambiguous at the dashes ("a-b"+"c" vs "a"+"b-c"). Here a digest of the four names,
    joined by "/" (which no name contains), follows a readable prefix."""
    digest = hashlib.sha256(
        "/".join((pod_namespace, pod, identity_namespace, identity)).encode()
    ).hexdigest()[:16]
    prefix = f"{pod}-{identity}"[: NAME_LIMIT - len(digest) - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def valid_resource_id(identity: AzureIdentity) -> bool:
    return bool(RESOURCE_ID.match(identity.resource_id.strip()))


@dataclass(frozen=True)
class Problem:
    """Why a binding cannot give a pod its identity (reported on the binding as an Event)."""

    binding: AzureIdentityBinding
    reason: str
    message: str


def wants_for(
    pod: PodView,
    node: NodeView | None,
    bindings: Iterable[AzureIdentityBinding],
    identity_of: Mapping[tuple[str, str], AzureIdentity],
    exceptions: Iterable[AzurePodIdentityException],
    namespaced: bool,
) -> tuple[list[Want], list[Problem]]:
    """The AzureAssignedIdentities `pod` should have, given the bindings whose selector equals
    its `aadpodidbinding` label (already looked up by the caller), and what stands in the way."""
    if not pod.node or pod.finished or node is None:
        return [], []
    labels = dict(pod.labels)
    if any(e.matches(labels) for e in exceptions if e.meta.namespace == pod.namespace):
        return [], []  # the pod talks to IMDS as its node (AzurePodIdentityException)
    wants: list[Want] = []
    problems: list[Problem] = []
    for binding in sorted(bindings, key=lambda b: (b.meta.namespace, b.meta.name)):
        if not binding.matches(labels):
            continue
        if namespaced and binding.meta.namespace != pod.namespace:
            continue
        identity = identity_of.get((binding.meta.namespace, binding.azure_identity))
        if identity is None:
            problems.append(Problem(binding, "IdentityNotFound",
                f"AzureIdentity {binding.meta.namespace}/{binding.azure_identity} named by "
                "spec.azureIdentity does not exist; create it or fix the binding"))  # fmt: skip
            continue
        if identity.namespaced and not (
            identity.meta.namespace == binding.meta.namespace == pod.namespace
        ):
            continue
        target = None
        if identity.type == IdentityType.USER_ASSIGNED_MSI:
            if not valid_resource_id(identity):
                problems.append(Problem(binding, "InvalidIdentity",
                    f"AzureIdentity {identity.meta.ref} has type 0 but spec.resourceID "
                    f"{identity.resource_id!r} is not /subscriptions/<id>/resourcegroups/<group>"
                    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>; the "
                    "identity is skipped"))  # fmt: skip
                continue
            if node.target is None:
                problems.append(Problem(binding, "NodeNotInAzure",
                    f"node {node.name} has no Azure spec.providerID, so MIC cannot tell which VM "
                    "or scale set to give the identity"))  # fmt: skip
                continue
            target = node.target
        name = assigned_name(pod.namespace, pod.name, identity.meta.namespace, identity.meta.name)
        wants.append(Want(name, pod, Trimmed.identity(identity), Trimmed.binding(binding), target))
    return wants, problems


def assigned_body(want: Want, state: str, finalizer: str, uid_annotation: str,
                  node_label: str) -> dict[str, Any]:  # fmt: skip
    """The AzureAssignedIdentity object MIC writes for `want` (no resourceVersion)."""
    meta = Meta(
        namespace=want.namespace,
        name=want.name,
        labels={node_label: want.pod.node},
        annotations={uid_annotation: want.pod.uid},
    ).to_api()
    meta["finalizers"] = [finalizer]
    return {
        "apiVersion": "aadpodidentity.k8s.io/v1",
        "kind": "AzureAssignedIdentity",
        "metadata": meta,
        "spec": {
            "azureIdentityRef": want.identity.to_api(),
            "azureBindingRef": want.binding.to_api(),
            "pod": want.pod.name,
            "podNamespace": want.pod.namespace,
            "nodename": want.pod.node,
        },
        "status": {"status": state, "availableReplicas": 1},
    }
