"""The seed's `arm:` section: the subscription, the VMs and scale sets with their nodes and
identities, and who may assign which identities. Every part is optional; without VMs or scale
sets the IMDS stand-in keeps serving every managed identity to every caller.

    arm:
      subscription_id: 33333333-3333-3333-3333-333333333333
      resource_group: devstack-nodes             # default group of VMs and scale sets
      identity_resource_group: devstack-identities  # default group of user-assigned identities
      location: devstack
      operation_seconds: {vm: 0.0, vmss: 0.0}    # how long a PATCH takes to take effect
      default_node: devstack-node-0              # the node the plain IMDS path answers for
                                                 # (none: that path answers 404)
      operators:                                 # identity -> identities it may assign ("*": all)
        mic: [pod-identity, vm-user]             # (the admin identity may do everything)
      virtual_machines:
        <name>: {resource_group: rg, node: <node name, default: the VM name>,
                 system_identity: <a system-assigned identity>, identities: [<user-assigned>],
                 subscription_id: <another subscription>, operation_seconds: <this one's>}
      scale_sets:
        <name>: {resource_group: rg, instances: {"0": <node name>, "1": ...},
                 system_identity: ..., identities: [...]}

A user-assigned identity under `identities:` may give `resource_id` and `principal_id`; by
default its resource id is `/subscriptions/<subscription_id>/resourceGroups/
<identity_resource_group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>` and
its principal id a fixed UUID derived from its client id. `system_identity` (a
`system-assigned` identity) is what `SystemAssigned` turns on; identities listed are attached
from the start, and in effect at once."""

from __future__ import annotations

import uuid
from typing import Any

from devstack.arm.compute import ArmSettings, Compute
from devstack.arm.resources import IDENTITY_ID, ComputeResource, IdentityState, identity_resource_id
from devstack.world import World


class ArmSeedError(ValueError):
    """An `arm:` entry that cannot be used; the message names it."""


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArmSeedError(f"{where}: expected a mapping")
    return value


def build_compute(world: World, raw: Any) -> Compute:
    """Fill in the managed identities' ids and build the compute world of `raw` (the section)."""
    section = _mapping(raw, "arm")
    operation = _mapping(section.get("operation_seconds"), "arm.operation_seconds")
    settings = ArmSettings(default_node=None)
    settings.subscription_id = str(section.get("subscription_id") or settings.subscription_id)
    settings.resource_group = str(section.get("resource_group") or settings.resource_group)
    settings.identity_resource_group = str(
        section.get("identity_resource_group") or settings.identity_resource_group
    )
    settings.location = str(section.get("location") or settings.location)
    settings.vm_operation_seconds = float(operation.get("vm") or 0.0)
    settings.vmss_operation_seconds = float(operation.get("vmss") or 0.0)
    for name, allowed in _mapping(section.get("operators"), "arm.operators").items():
        if name not in world.identities:
            raise ArmSeedError(f"arm.operators: identity {name!r} is not declared")
        settings.operators[str(name)] = {str(a) for a in allowed or []}
    _identity_ids(world, settings)
    compute = Compute(world, settings)
    for kind, key in (("vm", "virtual_machines"), ("vmss", "scale_sets")):
        for name, spec in _mapping(section.get(key), f"arm.{key}").items():
            where = f"arm.{key}.{name}"
            compute.add(_resource(world, settings, kind, str(name), _mapping(spec, where), where))
    default = section.get("default_node")
    if default is not None and compute.node_state(str(default)) is None:
        raise ArmSeedError(f"arm.default_node: no VM or scale set has the node {default!r}")
    settings.default_node = str(default) if default is not None else None
    return compute


def _identity_ids(world: World, settings: ArmSettings) -> None:
    for identity in world.identities.values():
        if identity.kind not in ("user-assigned", "system-assigned"):
            continue
        if not identity.principal_id:
            identity.principal_id = str(uuid.uuid5(uuid.NAMESPACE_URL, identity.client_id))
        if identity.kind == "user-assigned" and not identity.resource_id:
            identity.resource_id = identity_resource_id(
                settings.subscription_id, settings.identity_resource_group, identity.name
            )
        if identity.resource_id and not IDENTITY_ID.match(identity.resource_id):
            raise ArmSeedError(
                f"identities.{identity.name}.resource_id: {identity.resource_id!r} is not a "
                "user-assigned identity resource id (/subscriptions/<s>/resourceGroups/<g>/"
                "providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)"
            )


def _resource(
    world: World, settings: ArmSettings, kind: str, name: str, spec: dict[str, Any], where: str
) -> ComputeResource:
    system = spec.get("system_identity")
    if system is not None and (
        system not in world.identities or world.identities[system].kind != "system-assigned"
    ):
        raise ArmSeedError(f"{where}.system_identity: {system!r} is not a system-assigned identity")
    users = [str(u) for u in spec.get("identities") or []]
    for user in users:
        if user not in world.identities or world.identities[user].kind != "user-assigned":
            raise ArmSeedError(f"{where}.identities: {user!r} is not a user-assigned identity")
    state = IdentityState(str(system) if system else None, frozenset(users))
    resource = ComputeResource(
        kind=kind,
        subscription=str(spec.get("subscription_id") or settings.subscription_id),
        resource_group=str(spec.get("resource_group") or settings.resource_group),
        name=name,
        location=settings.location,
        model=state,
        effective=state,
        system_identity=str(system) if system else None,
        operation_seconds=(
            float(spec["operation_seconds"]) if spec.get("operation_seconds") is not None else None
        ),
    )
    if kind == "vm":
        resource.node = str(spec.get("node") or name)
    else:
        instances = _mapping(spec.get("instances"), f"{where}.instances")
        if not instances:
            raise ArmSeedError(f"{where}.instances: a scale set needs at least one instance")
        resource.instances = {str(k): str(v) for k, v in instances.items()}
    return resource
