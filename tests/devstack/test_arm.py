"""The devstack's Azure Resource Manager through the official azure-mgmt-compute SDK: what MIC
sees when it reads and changes the identities of VMs and scale sets."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.models import (
    UserAssignedIdentitiesValue,
    VirtualMachineIdentity,
    VirtualMachineUpdate,
)

from devstack.client import Devstack
from tests.devstack.conftest import ARM_RG, admin_token, compute_client

OTHER_SUBSCRIPTION = "66666666-6666-6666-6666-666666666666"


def _ids(ds: Devstack, *names: str, remove: bool = False) -> dict[str, Any]:
    return {ds.resource_id(name): (None if remove else {}) for name in names}


def _names(ds: Devstack, identity: Any) -> set[str]:
    """The identity names of a resource's userAssignedIdentities (ids compared without case)."""
    if identity is None or not identity.user_assigned_identities:
        return set()
    by_id = {v["resource_id"].lower(): n for n, v in ds.identities.items() if "resource_id" in v}
    return {by_id[key.lower()] for key in identity.user_assigned_identities}


def _patch_vm(ds: Devstack, name: str, identity: dict[str, Any], caller: str = "mic") -> Any:
    client = compute_client(ds, caller)
    return client.virtual_machines.begin_update(ARM_RG, name, {"identity": identity}).result()


def _error(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str, str]:
    error = exc.value.error
    assert error is not None
    return exc.value.status_code, str(error.code), str(error.message)


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
    assert _names(arm_stack, vm.identity) == {"id-a"}

    vm = _patch_vm(
        arm_stack,
        "vm-b",
        {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-b")},
    )
    assert _names(arm_stack, vm.identity) == {"id-a", "id-b"}, "a PATCH adds to what is there"

    vm = _patch_vm(
        arm_stack,
        "vm-b",
        {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-a", remove=True)},
    )
    assert _names(arm_stack, vm.identity) == {"id-b"}, "null removes one, the others stay"

    vm = _patch_vm(
        arm_stack,
        "vm-b",
        {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-c", remove=True)},
    )
    assert _names(arm_stack, vm.identity) == {"id-b"}, "removing one that is not there is a no-op"

    vm = _patch_vm(
        arm_stack,
        "vm-b",
        {"type": "None", "userAssignedIdentities": _ids(arm_stack, "id-b", remove=True)},
    )
    assert vm.identity is None
    assert arm_stack.arm_resource("vm-b")["identity_type"] == "None"


def test_identity_type_transitions_keep_system_and_user_assigned_apart(arm_stack: Devstack) -> None:
    system_principal = arm_stack.identities["node-system"]["principal_id"]
    vm = _patch_vm(
        arm_stack,
        "vm-a",
        {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-a")},
    )
    assert vm.identity.type == "SystemAssigned, UserAssigned"
    assert vm.identity.principal_id == system_principal
    assert _names(arm_stack, vm.identity) == {"id-a"}

    # Back to SystemAssigned: every user-assigned identity goes, the system one stays.
    vm = _patch_vm(
        arm_stack,
        "vm-a",
        {"type": "SystemAssigned", "userAssignedIdentities": _ids(arm_stack, "id-a", remove=True)},
    )
    assert vm.identity.type == "SystemAssigned" and not vm.identity.user_assigned_identities

    vm = _patch_vm(arm_stack, "vm-a", {"type": "None"})
    assert vm.identity is None

    # Turned on again, the VM gets its system-assigned identity back.
    vm = _patch_vm(arm_stack, "vm-a", {"type": "systemassigned"})
    assert vm.identity.type == "SystemAssigned"
    assert vm.identity.principal_id == system_principal

    with pytest.raises(HttpResponseError) as refused:
        _patch_vm(arm_stack, "vm-a", {"type": "UserAssigned"})
    status, _, message = _error(refused)
    assert status == 400 and "at least one user-assigned identity" in message
    with pytest.raises(HttpResponseError) as bad_type:
        _patch_vm(arm_stack, "vm-a", {"type": "Everything"})
    assert _error(bad_type)[:2] == (400, "InvalidParameter")
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
        {"identity": {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-c")}},
    )
    assert poller.status() == "InProgress"
    during = client.virtual_machines.get(ARM_RG, "vm-slow")
    assert during.properties.provisioning_state == "Updating"
    assert _names(arm_stack, during.identity) == {"id-c"}, "GET shows the requested model at once"
    assert arm_stack.arm_resource("vm-slow")["effective_user_assigned"] == []

    vm = poller.result()
    assert poller.status() == "Succeeded"
    assert vm.properties.provisioning_state == "Succeeded"
    assert arm_stack.attached("vm-slow") == ["id-c"]
    assert arm_stack.count(operation="vm.patch", status=200) == 1
    assert arm_stack.arm_resource("vm-slow")["patches"] == 1
    assert arm_stack.count(operation="arm.operation", status=200) >= 1


def test_updates_of_one_vm_queue_and_both_are_kept(arm_stack: Devstack) -> None:
    client = compute_client(arm_stack)
    first = client.virtual_machines.begin_update(
        ARM_RG,
        "vm-queue",
        {"identity": {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-a")}},
    )
    second = client.virtual_machines.begin_update(
        ARM_RG,
        "vm-queue",
        {"identity": {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-b")}},
    )
    vm = second.result()
    assert first.status() in ("InProgress", "Succeeded")
    first.result()
    assert _names(arm_stack, vm.identity) == {"id-a", "id-b"}
    assert arm_stack.attached("vm-queue") == ["id-a", "id-b"]


def test_throttling_per_subscription_is_retried_after_retry_after(arm_stack: Devstack) -> None:
    client = compute_client(arm_stack)
    arm_stack.reset_counters()
    arm_stack.fault(
        subscription=arm_stack.subscription_id, endpoint="arm", rate_429=1.0, retry_after=1, count=2
    )
    try:
        other = compute_client(arm_stack, subscription=OTHER_SUBSCRIPTION)
        assert other.virtual_machines.get("other-rg", "vm-elsewhere").name == "vm-elsewhere"
        assert arm_stack.count(vault=OTHER_SUBSCRIPTION, status=429) == 0, (
            "another subscription is not throttled"
        )

        vm = client.virtual_machines.get(ARM_RG, "vm-c")
        assert vm.name == "vm-c"
        assert arm_stack.count(vault=arm_stack.subscription_id, operation="vm.get", status=429) == 2
        assert arm_stack.count(vault=arm_stack.subscription_id, operation="vm.get", status=200) == 1
    finally:
        arm_stack.clear_faults()


def test_throttled_answer_has_the_arm_code_and_retry_after(arm_stack: Devstack) -> None:
    arm_stack.fault(
        subscription=arm_stack.subscription_id, endpoint="arm", rate_429=1.0, retry_after=7, count=1
    )
    try:
        response = requests.get(
            f"{arm_stack.arm_endpoint}/subscriptions/{arm_stack.subscription_id}/resourceGroups/"
            f"{ARM_RG}/providers/Microsoft.Compute/virtualMachines/vm-c",
            params={"api-version": "2019-12-01"},
            headers={"Authorization": f"Bearer {_arm_token(arm_stack)}"},
            verify=arm_stack.ca_bundle,
            timeout=10,
        )
    finally:
        arm_stack.clear_faults()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["code"] == "SubscriptionRequestsThrottled"


def test_more_than_150_identity_changes_are_refused_whole(arm_stack: Devstack) -> None:
    template = arm_stack.resource_id("id-a").rsplit("/", 1)[0]
    too_many = {f"{template}/gone-{i}": None for i in range(150)}
    too_many[arm_stack.resource_id("id-b")] = {}
    with pytest.raises(HttpResponseError) as refused:
        _patch_vm(arm_stack, "vm-c", {"type": "UserAssigned", "userAssignedIdentities": too_many})
    status, code, message = _error(refused)
    assert (status, code) == (400, "FailedIdentityOperation")
    assert (
        "User Assigned Identities Number '151' Assign exceed limit '150' in one request" in message
    )
    assert arm_stack.attached("vm-c") == ["id-a"], "nothing of a refused request is applied"

    del too_many[f"{template}/gone-0"]
    vm = _patch_vm(arm_stack, "vm-c", {"type": "UserAssigned", "userAssignedIdentities": too_many})
    assert _names(arm_stack, vm.identity) == {"id-a", "id-b"}, "150 changes are accepted"
    _patch_vm(
        arm_stack,
        "vm-c",
        {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-b", remove=True)},
    )


def test_linked_authorization_failed_names_every_refused_identity(arm_stack: Devstack) -> None:
    wanted = _ids(arm_stack, "id-a", "id-b", "id-c")
    with pytest.raises(HttpResponseError) as refused:
        _patch_vm(
            arm_stack,
            "vm-b",
            {"type": "UserAssigned", "userAssignedIdentities": wanted},
            caller="limited",
        )
    status, code, message = _error(refused)
    assert (status, code) == (403, "LinkedAuthorizationFailed")
    linked = message.split("linked scope(s) '", 1)[1].split("'", 1)[0].split(",")
    assert set(linked) == {arm_stack.resource_id("id-b"), arm_stack.resource_id("id-c")}
    assert "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action" in message
    assert arm_stack.attached("vm-b") == []

    vm = _patch_vm(
        arm_stack,
        "vm-b",
        {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-a")},
        caller="limited",
    )
    assert _names(arm_stack, vm.identity) == {"id-a"}, "the allowed one alone goes through"
    _patch_vm(
        arm_stack,
        "vm-b",
        {"type": "None", "userAssignedIdentities": _ids(arm_stack, "id-a", remove=True)},
    )


def test_a_caller_without_a_role_is_refused(arm_stack: Devstack) -> None:
    with pytest.raises(HttpResponseError) as refused:
        compute_client(arm_stack, "outsider").virtual_machines.get(ARM_RG, "vm-a")
    status, code, message = _error(refused)
    assert (status, code) == (403, "AuthorizationFailed")
    assert "Microsoft.Compute/virtualMachines/read" in message


def test_identity_ids_are_validated_and_compared_without_case(arm_stack: Devstack) -> None:
    not_an_identity = arm_stack.arm["nodes"]["node-a"]["resource_id"]
    with pytest.raises(HttpResponseError) as invalid:
        _patch_vm(
            arm_stack,
            "vm-b",
            {"type": "UserAssigned", "userAssignedIdentities": {not_an_identity: {}}},
        )
    assert _error(invalid)[:2] == (400, "LinkedInvalidPropertyId")

    unknown = arm_stack.resource_id("id-a").replace("/id-a", "/nobody")
    with pytest.raises(HttpResponseError) as missing:
        _patch_vm(
            arm_stack, "vm-b", {"type": "UserAssigned", "userAssignedIdentities": {unknown: {}}}
        )
    status, code, message = _error(missing)
    assert (status, code) == (400, "FailedIdentityOperation") and unknown in message

    # Another subscription's identity, its id shouted: still id-d.
    vm = _patch_vm(
        arm_stack,
        "vm-b",
        {
            "type": "UserAssigned",
            "userAssignedIdentities": {arm_stack.resource_id("id-d").upper(): {}},
        },
    )
    assert _names(arm_stack, vm.identity) == {"id-d"}
    _patch_vm(
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
        {"identity": {"type": "UserAssigned", "userAssignedIdentities": _ids(arm_stack, "id-c")}},
    ).result()
    assert _names(arm_stack, scale_set.identity) == {"id-c"}
    assert arm_stack.count(operation="vmss.patch", status=200) >= 1
    resource = arm_stack.arm_resource("ss-1")
    assert set(resource["nodes"]) == {"ss-1-node-0", "ss-1-node-1"}
    assert resource["effective_user_assigned"] == ["id-c"]


def _arm_token(ds: Devstack, resource: str = "https://management.azure.com/") -> str:
    response = requests.post(
        f"{ds.authority_host}/{ds.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": ds.client_id("mic"),
            "client_secret": ds.client_secret("mic"),
            "scope": f"{resource}.default",
        },
        verify=ds.ca_bundle,
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def test_arm_wants_a_management_token(arm_stack: Devstack) -> None:
    url = (
        f"{arm_stack.arm_endpoint}/subscriptions/{arm_stack.subscription_id}/resourceGroups/"
        f"{ARM_RG}/providers/Microsoft.Compute/virtualMachines/vm-a"
    )
    params = {"api-version": "2019-12-01"}
    bare = requests.get(url, params=params, verify=arm_stack.ca_bundle, timeout=10)
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "AuthenticationFailed"
    assert bare.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")

    vault_token = admin_token(arm_stack)
    wrong = requests.get(
        url,
        params=params,
        headers={"Authorization": f"Bearer {vault_token}"},
        verify=arm_stack.ca_bundle,
        timeout=10,
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"

    expired_token = arm_stack.access_token("mic", "https://management.azure.com/", expires_in=-60)
    expired = requests.get(
        url,
        params=params,
        headers={"Authorization": f"Bearer {expired_token}"},
        verify=arm_stack.ca_bundle,
        timeout=10,
    )
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "ExpiredAuthenticationToken"

    headers = {"Authorization": f"Bearer {_arm_token(arm_stack)}"}
    no_version = requests.get(url, headers=headers, verify=arm_stack.ca_bundle, timeout=10)
    assert no_version.status_code == 400
    assert no_version.json()["error"]["code"] == "MissingApiVersionParameter"

    ok = requests.get(
        url.lower(), params=params, headers=headers, verify=arm_stack.ca_bundle, timeout=10
    )
    assert ok.status_code == 200, "paths are matched without case"
    assert int(ok.headers["x-ms-ratelimit-remaining-subscription-reads"]) < 12000
