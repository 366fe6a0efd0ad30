"""The devstack's Azure Resource Manager refuses and throttles as Azure does: queued updates,
throttling per subscription, the identity limit, missing roles, and the token audience."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import HttpResponseError

from devstack.client import Devstack
from tests.devstack.arm_support import (
    OTHER_SUBSCRIPTION,
    arm_error,
    identity_ids,
    identity_names,
    patch_vm,
)
from tests.devstack.conftest import ARM_RG, admin_token, compute_client


def test_updates_of_one_vm_queue_and_both_are_kept(arm_stack: Devstack) -> None:
    client = compute_client(arm_stack)
    first = client.virtual_machines.begin_update(
        ARM_RG,
        "vm-queue",
        {
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": identity_ids(arm_stack, "id-a"),
            }
        },
    )
    second = client.virtual_machines.begin_update(
        ARM_RG,
        "vm-queue",
        {
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": identity_ids(arm_stack, "id-b"),
            }
        },
    )
    vm = second.result()
    assert first.status() in ("InProgress", "Succeeded")
    first.result()
    assert identity_names(arm_stack, vm.identity) == {"id-a", "id-b"}
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
        patch_vm(arm_stack, "vm-c", {"type": "UserAssigned", "userAssignedIdentities": too_many})
    status, code, message = arm_error(refused)
    assert (status, code) == (400, "FailedIdentityOperation")
    assert (
        "User Assigned Identities Number '151' Assign exceed limit '150' in one request" in message
    )
    assert arm_stack.attached("vm-c") == ["id-a"], "nothing of a refused request is applied"

    del too_many[f"{template}/gone-0"]
    vm = patch_vm(arm_stack, "vm-c", {"type": "UserAssigned", "userAssignedIdentities": too_many})
    assert identity_names(arm_stack, vm.identity) == {"id-a", "id-b"}, "150 changes are accepted"
    patch_vm(
        arm_stack,
        "vm-c",
        {
            "type": "UserAssigned",
            "userAssignedIdentities": identity_ids(arm_stack, "id-b", remove=True),
        },
    )


def test_linked_authorization_failed_names_every_refused_identity(arm_stack: Devstack) -> None:
    wanted = identity_ids(arm_stack, "id-a", "id-b", "id-c")
    with pytest.raises(HttpResponseError) as refused:
        patch_vm(
            arm_stack,
            "vm-b",
            {"type": "UserAssigned", "userAssignedIdentities": wanted},
            caller="limited",
        )
    status, code, message = arm_error(refused)
    assert (status, code) == (403, "LinkedAuthorizationFailed")
    linked = message.split("linked scope(s) '", 1)[1].split("'", 1)[0].split(",")
    assert set(linked) == {arm_stack.resource_id("id-b"), arm_stack.resource_id("id-c")}
    assert "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action" in message
    assert arm_stack.attached("vm-b") == []

    vm = patch_vm(
        arm_stack,
        "vm-b",
        {"type": "UserAssigned", "userAssignedIdentities": identity_ids(arm_stack, "id-a")},
        caller="limited",
    )
    assert identity_names(arm_stack, vm.identity) == {"id-a"}, "the allowed one alone goes through"
    patch_vm(
        arm_stack,
        "vm-b",
        {"type": "None", "userAssignedIdentities": identity_ids(arm_stack, "id-a", remove=True)},
    )


def test_a_caller_without_a_role_is_refused(arm_stack: Devstack) -> None:
    with pytest.raises(HttpResponseError) as refused:
        compute_client(arm_stack, "outsider").virtual_machines.get(ARM_RG, "vm-a")
    status, code, message = arm_error(refused)
    assert (status, code) == (403, "AuthorizationFailed")
    assert "Microsoft.Compute/virtualMachines/read" in message


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
