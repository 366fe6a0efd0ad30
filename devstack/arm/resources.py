"""Resource ids and the two compute resource types the stand-in keeps: a virtual machine (one
node) and a virtual machine scale set (one node per instance), each with its identity block.

Identity state is kept twice: `model` is what the last accepted PATCH asked for (what GET
shows at once, as in Azure), `effective` what the last *finished* operation applied (what IMDS
on the resource's nodes honours). They differ only while an operation is in progress."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

VM_TYPE = "Microsoft.Compute/virtualMachines"
VMSS_TYPE = "Microsoft.Compute/virtualMachineScaleSets"
TYPES = {"vm": VM_TYPE, "vmss": VMSS_TYPE}

# ARM compares resource ids without regard to case; the name part excludes "/".
IDENTITY_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/"
    r"microsoft\.managedidentity/userassignedidentities/([^/]+)$",
    re.IGNORECASE,
)

NONE = "None"
SYSTEM = "SystemAssigned"
USER = "UserAssigned"
BOTH = "SystemAssigned, UserAssigned"
IDENTITY_TYPES = (NONE, SYSTEM, USER, BOTH)


def identity_resource_id(subscription: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )


def normalise_type(raw: str) -> str | None:
    """The canonical spelling of an identity type, or None when it is not one ARM knows.
    Case and spacing around the comma do not matter (ARM accepts "systemassigned,userassigned")."""
    wanted = raw.replace(" ", "").lower()
    for known in IDENTITY_TYPES:
        if known.replace(" ", "").lower() == wanted:
            return known
    return None


def type_of(system: bool, users: bool) -> str:
    return {(False, False): NONE, (True, False): SYSTEM, (False, True): USER}.get(
        (system, users), BOTH
    )


@dataclass(frozen=True)
class IdentityState:
    """One identity block: the system-assigned identity (a world identity name) if enabled,
    and the user-assigned identities (world identity names)."""

    system: str | None = None
    users: frozenset[str] = frozenset()

    @property
    def type(self) -> str:
        return type_of(self.system is not None, bool(self.users))


@dataclass
class ComputeResource:
    """A VM (`kind` "vm", one `node`) or a scale set (`kind` "vmss", `instances` id -> node)."""

    kind: str
    subscription: str
    resource_group: str
    name: str
    location: str
    model: IdentityState = field(default_factory=IdentityState)
    effective: IdentityState = field(default_factory=IdentityState)
    # The identity "SystemAssigned" turns on: the seed's, else one created on first use.
    system_identity: str | None = None
    node: str = ""
    instances: dict[str, str] = field(default_factory=dict)
    unique_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    busy_until: float = 0.0  # monotonic end of the last queued operation
    operation_seconds: float | None = None  # overrides the kind's default duration
    patches: int = 0  # accepted PATCHes since start (benchmarks count them per resource)

    @property
    def resource_type(self) -> str:
        return TYPES[self.kind]

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
            f"{self.resource_type}/{self.name}"
        )

    @property
    def key(self) -> tuple[str, str, str, str]:
        return resource_key(self.kind, self.subscription, self.resource_group, self.name)

    def nodes(self) -> dict[str, str]:
        """node name -> the Kubernetes providerID of that node."""
        if self.kind == "vm":
            return {self.node: f"azure://{self.id}"}
        return {
            node: f"azure://{self.id}/virtualMachines/{instance}"
            for instance, node in self.instances.items()
        }


def resource_key(
    kind: str, subscription: str, resource_group: str, name: str
) -> tuple[str, str, str, str]:
    return (kind, subscription.lower(), resource_group.lower(), name.lower())


def identity_view(
    state: IdentityState,
    tenant_id: str,
    principals: dict[str, tuple[str, str, str]],
) -> dict[str, Any] | None:
    """The JSON identity block; `principals` maps an identity name to (resource id, principal
    id, client id). None when the type is None (ARM then omits the block)."""
    if state.system is None and not state.users:
        return None
    block: dict[str, Any] = {"type": state.type}
    if state.system is not None:
        block["principalId"] = principals[state.system][1]
        block["tenantId"] = tenant_id
    if state.users:
        block["userAssignedIdentities"] = {
            principals[name][0]: {
                "principalId": principals[name][1],
                "clientId": principals[name][2],
            }
            for name in sorted(state.users)
        }
    return block


def resource_view(
    resource: ComputeResource,
    tenant_id: str,
    principals: dict[str, tuple[str, str, str]],
    updating: bool,
) -> dict[str, Any]:
    """What GET (and PATCH) return: the resource with its identity block as last requested."""
    state = "Updating" if updating else "Succeeded"
    body: dict[str, Any] = {
        "name": resource.name,
        "id": resource.id,
        "type": resource.resource_type,
        "location": resource.location,
        "tags": {},
    }
    identity = identity_view(resource.model, tenant_id, principals)
    if identity is not None:
        body["identity"] = identity
    if resource.kind == "vm":
        body["properties"] = {
            "vmId": resource.unique_id,
            "provisioningState": state,
            "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
        }
    else:
        body["sku"] = {
            "name": "Standard_D2s_v3",
            "tier": "Standard",
            "capacity": len(resource.instances),
        }
        body["properties"] = {
            "uniqueId": resource.unique_id,
            "provisioningState": state,
            "upgradePolicy": {"mode": "Manual"},
            "singlePlacementGroup": True,
        }
    return body
