"""The compute resources (VMs and scale sets), who may change them (`operators` in the seed;
the admin identity may do everything), and the queueing of their updates as operations. What a
PATCH body does to the identity block is in `devstack/arm/delta.py`.

Lock order: the compute lock first, then the world's (identities)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devstack.arm import errors
from devstack.arm.delta import EVERYTHING, Caller, apply_delta
from devstack.arm.operations import Operation, OperationLog
from devstack.arm.resources import ComputeResource, IdentityState, resource_key, resource_view
from devstack.model import BadInput, Identity, NotFound

if TYPE_CHECKING:
    from devstack.world import World


@dataclass
class ArmSettings:
    """The seed's `arm:` section, minus the resources."""

    subscription_id: str = "33333333-3333-3333-3333-333333333333"
    resource_group: str = "devstack-nodes"
    identity_resource_group: str = "devstack-identities"
    location: str = "devstack"
    vm_operation_seconds: float = 0.0
    vmss_operation_seconds: float = 0.0
    default_node: str | None = None
    # caller identity name -> identity names it may assign ("*": all); others may not write
    operators: dict[str, set[str]] = field(default_factory=dict)


class Compute:
    """Every VM and scale set, the node -> resource map, and the operations on them."""

    def __init__(self, world: World, settings: ArmSettings | None = None) -> None:
        self.world = world
        self.settings = settings or ArmSettings()
        self._lock = threading.RLock()
        self._resources: dict[tuple[str, str, str, str], ComputeResource] = {}
        self._nodes: dict[str, ComputeResource] = {}
        self.operations = OperationLog()

    # --- set-up (seed) ---------------------------------------------------------------------

    def add(self, resource: ComputeResource) -> None:
        with self._lock:
            for node in resource.nodes():
                if node in self._nodes:
                    raise ValueError(f"node {node!r} belongs to two resources")
                self._nodes[node] = resource
            self._resources[resource.key] = resource

    @property
    def bound(self) -> bool:
        """Whether the world has compute resources (IMDS then serves per node)."""
        with self._lock:
            return bool(self._nodes)

    def set_operator(self, identity: str, allowed: list[str]) -> None:
        self.world.identity(identity)
        with self._lock:
            self.settings.operators[identity] = set(allowed)

    # --- reads -----------------------------------------------------------------------------

    def find(self, kind: str, subscription: str, resource_group: str, name: str) -> ComputeResource:
        found = self._resources.get(resource_key(kind, subscription, resource_group, name))
        if found is None:
            raise errors.not_found(
                "Microsoft.Compute/"
                + ("virtualMachines" if kind == "vm" else "virtualMachineScaleSets"),
                name,
                resource_group,
            )
        return found

    def get(self, caller: str, kind: str, subscription: str, rg: str, name: str) -> dict[str, Any]:
        with self._lock:
            resource = self.find(kind, subscription, rg, name)
            self._operator(caller, f"{resource.resource_type}/read", resource.id)
            return self.view(resource)

    def view(self, resource: ComputeResource) -> dict[str, Any]:
        updating = self.operations.busy(resource.key)
        names = set(resource.model.users)
        if resource.model.system:
            names.add(resource.model.system)
        return resource_view(resource, self.world.tenant_id, self._principals(names), updating)

    def operation(self, subscription: str, op_id: str) -> Operation | None:
        with self._lock:
            found = self.operations.get(op_id)
            if found is None or found.subscription.lower() != subscription.lower():
                return None
            return found

    def node_state(self, node: str) -> IdentityState | None:
        """The identities a node's IMDS may issue tokens for; None for an unknown node."""
        with self._lock:
            self.operations.settle()
            resource = self._nodes.get(node)
            return None if resource is None else resource.effective

    def describe(self) -> list[dict[str, Any]]:
        """Every resource with its identities (requested and in effect), for the admin API."""
        with self._lock:
            self.operations.settle()
            return [
                {
                    "kind": r.kind,
                    "id": r.id,
                    "subscription": r.subscription,
                    "resource_group": r.resource_group,
                    "name": r.name,
                    "nodes": r.nodes(),
                    "identity_type": r.model.type,
                    "system_assigned": r.model.system,
                    "user_assigned": sorted(r.model.users),
                    "effective_user_assigned": sorted(r.effective.users),
                    "updating": self.operations.busy(r.key),
                    "patches": r.patches,
                }
                for r in self._resources.values()
            ]

    # --- writes ----------------------------------------------------------------------------

    def update(
        self, caller: str, kind: str, subscription: str, rg: str, name: str, body: Any
    ) -> tuple[dict[str, Any], Operation]:
        """Apply a PATCH body: validate everything, then queue the operation."""
        with self._lock:
            resource = self.find(kind, subscription, rg, name)
            action = f"{resource.resource_type}/write"
            allowed = self._operator(caller, action, resource.id)
            if not isinstance(body, dict):
                raise errors.bad_request(
                    "The request content was invalid and could not be deserialized.",
                    code="InvalidRequestContent",
                )
            target = resource.model
            if body.get("identity") is not None:
                target = apply_delta(
                    resource.model,
                    body["identity"],
                    self._user_assigned(),
                    Caller(caller, action, resource.id, allowed),
                    lambda: self._system_identity(resource),
                )
            resource.model = target
            resource.patches += 1

            def apply() -> None:
                resource.effective = target

            duration = resource.operation_seconds
            if duration is None:
                duration = (
                    self.settings.vm_operation_seconds
                    if kind == "vm"
                    else self.settings.vmss_operation_seconds
                )
            operation = self.operations.start(
                resource.key, resource.subscription, resource.busy_until, duration, apply
            )
            resource.busy_until = operation.ends_at
            return self.view(resource), operation

    def set_by_hand(self, name: str, add: list[str], remove: list[str]) -> dict[str, Any]:
        """Attach or detach user-assigned identities at once, as someone in the portal would
        (no operation, no checks but existence): for tests of drift and cleanup."""
        with self._lock:
            self.operations.settle()
            matches = [r for r in self._resources.values() if r.name.lower() == name.lower()]
            if not matches:
                raise NotFound("compute resource", name)
            resource = matches[0]
            if self.operations.busy(resource.key):
                # The running operation would overwrite the change when it ends.
                raise BadInput(f"{name} has an update in progress; change it after it ends")
            for identity in add + remove:
                self.world.identity(identity)
            users = (set(resource.model.users) | set(add)) - set(remove)
            resource.model = resource.effective = IdentityState(
                resource.model.system, frozenset(users)
            )
            return self.view(resource)

    # --- helpers ---------------------------------------------------------------------------

    def _operator(self, caller: str, action: str, scope: str) -> set[str]:
        """The identities `caller` (a client id) may assign; 403 when it may not act at all."""
        identity = self.world.by_client_id(caller)
        if identity is not None and identity.name == self.world.admin:
            return {EVERYTHING}
        allowed = None if identity is None else self.settings.operators.get(identity.name)
        if allowed is None:
            raise errors.authorization_failed(caller, action, scope)
        return allowed

    def _user_assigned(self) -> dict[str, str]:
        """lower-case resource id -> name of every user-assigned identity in the world."""
        with self.world.locked():
            return {
                i.resource_id.lower(): i.name
                for i in self.world.identities.values()
                if i.kind == "user-assigned" and i.resource_id
            }

    def _system_identity(self, resource: ComputeResource) -> str:
        if resource.system_identity is None:
            name = f"{resource.name}-system-{resource.unique_id[:8]}"
            created = str(uuid.uuid4())
            self.world.add_identity(
                Identity(name, "system-assigned", created, principal_id=str(uuid.uuid4()))
            )
            resource.system_identity = name
        return resource.system_identity

    def _principals(self, names: set[str]) -> dict[str, tuple[str, str, str]]:
        result = {}
        for name in names:
            identity = self.world.identity(name)
            result[name] = (identity.resource_id, identity.principal_id, identity.client_id)
        return result
