"""The devstack's Azure Resource Manager through the official azure-mgmt-compute SDK: how MIC
reads and changes the identities of VMs and scale sets."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.models import (
    UserAssignedIdentitiesValue,
    VirtualMachineIdentity,
    VirtualMachineUpdate,
)

from devstack.client import Devstack
from tests.devstack.arm_support import arm_error, identity_ids, identity_names, patch_vm
from tests.devstack.conftest import ARM_RG, compute_client


def test_get_shows_the_identity_blocks_of_vms_and_scale_sets(arm_stack: Devstack) -> None:
    client = compute_client(arm_stack)
    vm = client.virtual_machines.get(ARM_RG, "vm-a")
    assert vm.identity.type == "SystemAssigned"
    assert vm.identity.principal_id == arm_stack.identities["node-system"]["principal_id"]
    assert vm.identity.tenant_id == arm_stack.tenant_id
    assert vm.properties.provisioning_state == "Succeeded"

    with_uami = client.virtual_machines.get(ARM_RG, "vm-c")
    entry = with_uami.identity.user_assigned_identities[arm_stack.resource_id("id-a")]
    assert entry.client_id == arm_stack.client_id("id-a")
    assert entry.principal_id == arm_stack.identities["id-a"]["principal_id"]
    assert entry.principal_id != entry.client_id

    scale_set = client.virtual_machine_scale_sets.get(ARM_RG, "ss-1")
    assert scale_set.identity is None
    assert scale_set.sku.capacity == 2
    assert arm_stack.provider_id("ss-1-node-1").endswith(
        "/virtualMachineScaleSets/ss-1/virtualMachines/1"
    )


def test_patch_merges_only_the_identity_delta(arm_stack: Devstack) -> None:
    client = compute_client(arm_stack)
    # The SDK's own models: {} adds.
    update = VirtualMachineUpdate(
        identity=VirtualMachineIdentity(
            type="UserAssigned",
            user_assigned_identities={arm_stack.resource_id("id-a"): UserAssignedIdentitiesValue()},
        )
    )
    vm = client.virtual_machines.begin_update(ARM_RG, "vm-b", update).result()
    assert identity_names(arm_stack, vm.identity) == {"id-a"}

    vm = patch_vm(
        arm_stack,
        "vm-b",
        {"type": "UserAssigned", "userAssignedIdentities": identity_ids(arm_stack, "id-b")},
    )
    assert identity_names(arm_stack, vm.identity) == {"id-a", "id-b"}, (
        "a PATCH adds to what is there"
    )

    vm = patch_vm(
        arm_stack,
        "vm-b",
        {
            "type": "UserAssigned",
            "userAssignedIdentities": identity_ids(arm_stack, "id-a", remove=True),
        },
    )
    assert identity_names(arm_stack, vm.identity) == {"id-b"}, "null removes one, the others stay"

    vm = patch_vm(
        arm_stack,
        "vm-b",
        {
            "type": "UserAssigned",
            "userAssignedIdentities": identity_ids(arm_stack, "id-c", remove=True),
        },
    )
    assert identity_names(arm_stack, vm.identity) == {"id-b"}, (
        "removing one that is not there is a no-op"
    )

    vm = patch_vm(
        arm_stack,
        "vm-b",
        {"type": "None", "userAssignedIdentities": identity_ids(arm_stack, "id-b", remove=True)},
    )
    assert vm.identity is None
    assert arm_stack.arm_resource("vm-b")["identity_type"] == "None"


def test_identity_type_transitions_keep_system_and_user_assigned_apart(arm_stack: Devstack) -> None:
    system_principal = arm_stack.identities["node-system"]["principal_id"]
    vm = patch_vm(
        arm_stack,
        "vm-a",
        {
            "type": "SystemAssigned, UserAssigned",
            "userAssignedIdentities": identity_ids(arm_stack, "id-a"),
        },
    )
    assert vm.identity.type == "SystemAssigned, UserAssigned"
    assert vm.identity.principal_id == system_principal
    assert identity_names(arm_stack, vm.identity) == {"id-a"}

    # Back to SystemAssigned: every user-assigned identity goes, the system one stays.
    vm = patch_vm(
        arm_stack,
        "vm-a",
        {
            "type": "SystemAssigned",
            "userAssignedIdentities": identity_ids(arm_stack, "id-a", remove=True),
        },
    )
    assert vm.identity.type == "SystemAssigned" and not vm.identity.user_assigned_identities

    vm = patch_vm(arm_stack, "vm-a", {"type": "None"})
    assert vm.identity is None

    # Turned on again, the VM gets its system-assigned identity back.
    vm = patch_vm(arm_stack, "vm-a", {"type": "systemassigned"})
    assert vm.identity.type == "SystemAssigned"
    assert vm.identity.principal_id == system_principal

    with pytest.raises(HttpResponseError) as refused:
        patch_vm(arm_stack, "vm-a", {"type": "UserAssigned"})
    status, _, message = arm_error(refused)
    assert status == 400 and "at least one user-assigned identity" in message
    with pytest.raises(HttpResponseError) as bad_type:
        patch_vm(arm_stack, "vm-a", {"type": "Everything"})
    assert arm_error(bad_type)[:2] == (400, "InvalidParameter")
    assert (
        compute_client(arm_stack).virtual_machines.get(ARM_RG, "vm-a").identity.type
        == "SystemAssigned"
    )


def test_patch_is_a_long_running_operation_the_sdk_polls(arm_stack: Devstack) -> None:
    client = compute_client(arm_stack)
    arm_stack.reset_counters()
    poller = client.virtual_machines.begin_update(
        ARM_RG,
        "vm-slow",
        {
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": identity_ids(arm_stack, "id-c"),
            }
        },
    )
    assert poller.status() == "InProgress"
    during = client.virtual_machines.get(ARM_RG, "vm-slow")
    assert during.properties.provisioning_state == "Updating"
    assert identity_names(arm_stack, during.identity) == {"id-c"}, (
        "GET shows the requested model at once"
    )
    assert arm_stack.arm_resource("vm-slow")["effective_user_assigned"] == []

    vm = poller.result()
    assert poller.status() == "Succeeded"
    assert vm.properties.provisioning_state == "Succeeded"
    assert arm_stack.attached("vm-slow") == ["id-c"]
    assert arm_stack.count(operation="vm.patch", status=200) == 1
    assert arm_stack.arm_resource("vm-slow")["patches"] == 1
    assert arm_stack.count(operation="arm.operation", status=200) >= 1


def test_identity_ids_are_validated_and_compared_without_case(arm_stack: Devstack) -> None:
    not_an_identity = arm_stack.arm["nodes"]["node-a"]["resource_id"]
    with pytest.raises(HttpResponseError) as invalid:
        patch_vm(
            arm_stack,
            "vm-b",
            {"type": "UserAssigned", "userAssignedIdentities": {not_an_identity: {}}},
        )
    assert arm_error(invalid)[:2] == (400, "LinkedInvalidPropertyId")

    unknown = arm_stack.resource_id("id-a").replace("/id-a", "/nobody")
    with pytest.raises(HttpResponseError) as missing:
        patch_vm(
            arm_stack, "vm-b", {"type": "UserAssigned", "userAssignedIdentities": {unknown: {}}}
        )
    status, code, message = arm_error(missing)
    assert (status, code) == (400, "FailedIdentityOperation") and unknown in message

    # Another subscription's identity, its id shouted: still id-d.
    vm = patch_vm(
        arm_stack,
        "vm-b",
        {
            "type": "UserAssigned",
            "userAssignedIdentities": {arm_stack.resource_id("id-d").upper(): {}},
        },
    )
    assert identity_names(arm_stack, vm.identity) == {"id-d"}
    patch_vm(
        arm_stack,
        "vm-b",
        {"type": "None", "userAssignedIdentities": {arm_stack.resource_id("id-d").lower(): None}},
    )
    assert arm_stack.attached("vm-b") == []


def test_scale_set_patch_reaches_every_instance(arm_stack: Devstack) -> None:
    client = compute_client(arm_stack)
    scale_set = client.virtual_machine_scale_sets.begin_update(
        ARM_RG,
        "ss-1",
        {
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": identity_ids(arm_stack, "id-c"),
            }
        },
    ).result()
    assert identity_names(arm_stack, scale_set.identity) == {"id-c"}
    assert arm_stack.count(operation="vmss.patch", status=200) >= 1
    resource = arm_stack.arm_resource("ss-1")
    assert set(resource["nodes"]) == {"ss-1-node-0", "ss-1-node-1"}
    assert resource["effective_user_assigned"] == ["id-c"]
