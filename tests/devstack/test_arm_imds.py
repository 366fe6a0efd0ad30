"""IMDS as Azure runs it: a node gets tokens only for the identities attached to its VM or scale
set, so nothing works until something (MIC) attaches them through ARM. Also the `arm:` seed
section, the admin view and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from devstack.client import Devstack
from devstack.seed import SeedError, load_seed
from tests.devstack.conftest import ARM_RG, compute_client, secret_client

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"api-version": "2018-02-01", "resource": "https://vault.azure.net"}


def _imds(host: str, **query: str) -> requests.Response:
    return requests.get(
        f"{host}/metadata/identity/oauth2/token",
        params={**PARAMS, **query},
        headers={"Metadata": "true"},
        timeout=10,
    )


def _attach(
    ds: Devstack, resource: str, identity: str, vmss: bool = False, remove: bool = False
) -> None:
    client = compute_client(ds)
    ops = client.virtual_machine_scale_sets if vmss else client.virtual_machines
    body = {
        "identity": {
            "type": "None" if remove else "UserAssigned",
            "userAssignedIdentities": {ds.resource_id(identity): None if remove else {}},
        }
    }
    ops.begin_update(ARM_RG, resource, body).result()


def test_a_node_reads_key_vault_only_once_its_identity_is_attached(
    arm_stack: Devstack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", arm_stack.node_imds_host("node-b"))
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    client_id = arm_stack.client_id("id-c")
    with pytest.raises(ClientAuthenticationError):
        secret_client(
            arm_stack, ManagedIdentityCredential(client_id=client_id), "armkv"
        ).get_secret("armsecret")

    _attach(arm_stack, "vm-b", "id-c")
    credential = ManagedIdentityCredential(client_id=client_id)
    secret = secret_client(arm_stack, credential, "armkv").get_secret("armsecret")
    assert secret.value == "arm-secret-value"

    _attach(arm_stack, "vm-b", "id-c", remove=True)
    refused = _imds(arm_stack.node_imds_host("node-b"), client_id=client_id)
    assert refused.status_code == 400
    assert refused.json()["error_description"] == "Identity not found"


def test_identities_of_one_node_are_not_another_nodes(arm_stack: Devstack) -> None:
    # vm-c has id-a from the seed; vm-b does not.
    assert (
        _imds(arm_stack.node_imds_host("node-c"), client_id=arm_stack.client_id("id-a")).status_code
        == 200
    )
    assert (
        _imds(arm_stack.node_imds_host("node-b"), client_id=arm_stack.client_id("id-a")).status_code
        == 400
    )
    by_resource = _imds(
        arm_stack.node_imds_host("node-c"), msi_res_id=arm_stack.resource_id("id-a").lower()
    )
    assert by_resource.json()["client_id"] == arm_stack.client_id("id-a")
    by_object = _imds(
        arm_stack.node_imds_host("node-c"), object_id=arm_stack.identities["id-a"]["principal_id"]
    )
    assert by_object.json()["client_id"] == arm_stack.client_id("id-a")
    unknown = _imds(f"{arm_stack.imds_host}/nodes/no-such-node")
    assert unknown.status_code == 404


def test_a_scale_set_identity_serves_every_instance(arm_stack: Devstack) -> None:
    client_id = arm_stack.client_id("id-b")
    assert _imds(arm_stack.node_imds_host("ss-1-node-0"), client_id=client_id).status_code == 400
    _attach(arm_stack, "ss-1", "id-b", vmss=True)
    for node in ("ss-1-node-0", "ss-1-node-1"):
        token = _imds(arm_stack.node_imds_host(node), client_id=client_id)
        assert token.status_code == 200 and token.json()["client_id"] == client_id


def test_imds_waits_for_the_operation_to_finish(arm_stack: Devstack) -> None:
    client_id = arm_stack.client_id("id-a")
    host = arm_stack.node_imds_host("node-slow")
    poller = compute_client(arm_stack).virtual_machines.begin_update(
        ARM_RG,
        "vm-slow",
        {
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": {arm_stack.resource_id("id-a"): {}},
            }
        },
    )
    assert poller.status() == "InProgress"
    assert _imds(host, client_id=client_id).status_code == 400, "not yet: the update is running"
    poller.result()
    assert _imds(host, client_id=client_id).status_code == 200


def test_the_plain_imds_port_is_the_default_node(arm_stack: Devstack) -> None:
    system = requests.get(
        arm_stack.imds_endpoint, params=PARAMS, headers={"Metadata": "true"}, timeout=10
    )
    assert system.status_code == 200
    assert system.json()["client_id"] == arm_stack.client_id("node-system")
    assert _imds(arm_stack.node_imds_host("node-b")).status_code == 400, (
        "node-b has no system identity"
    )


def test_default_world_serves_the_vm_identities_but_not_pod_identity(devstack: Devstack) -> None:
    host = devstack.imds_host
    assert _imds(host).json()["client_id"] == devstack.client_id("vm-system")
    for name in ("vm-user", "no-access"):
        assert _imds(host, client_id=devstack.client_id(name)).status_code == 200
    assert _imds(host, client_id=devstack.client_id("pod-identity")).status_code == 400, (
        "pod-identity waits for MIC"
    )
    assert devstack.arm["default_node"] == "devstack-node-0"
    assert set(devstack.arm["nodes"]) == {
        "devstack-node-0",
        "devstack-node-1",
        "devstack-vmss000000",
        "devstack-vmss000001",
    }
    vmss = devstack.arm_resource("devstack-vmss")
    assert vmss["kind"] == "vmss" and vmss["user_assigned"] == []


def test_cli_lists_vms_and_their_identities(arm_stack: Devstack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "arm", "list", "--state-dir", str(arm_stack.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "vm    devstack-nodes/vm-c" in result.stdout
    assert "user-assigned: id-a" in result.stdout
    assert "system-assigned: node-system" in result.stdout


def test_changes_by_hand_show_at_once(arm_stack: Devstack) -> None:
    arm_stack.change_identities_by_hand("vm-c", add=["id-b"])
    assert arm_stack.attached("vm-c") == ["id-a", "id-b"]
    vm = compute_client(arm_stack).virtual_machines.get(ARM_RG, "vm-c")
    assert len(vm.identity.user_assigned_identities) == 2
    arm_stack.change_identities_by_hand("vm-c", remove=["id-b"])
    assert arm_stack.attached("vm-c") == ["id-a"]


@pytest.mark.parametrize(
    ("arm", "fragment"),
    [
        (
            "{virtual_machines: {v: {identities: [sp]}}}",
            "arm.virtual_machines.v.identities: 'sp' is not a user-assigned identity",
        ),
        ("{virtual_machines: {v: {system_identity: ua}}}", "is not a system-assigned identity"),
        (
            "{scale_sets: {s: {}}}",
            "arm.scale_sets.s.instances: a scale set needs at least one instance",
        ),
        (
            "{default_node: nowhere, virtual_machines: {v: {}}}",
            "arm.default_node: no VM or scale set has the node 'nowhere'",
        ),
        ("{operators: {ghost: ['*']}}", "arm.operators: identity 'ghost' is not declared"),
        ("{virtual_machines: {v: {node: n}, w: {node: n}}}", "node 'n' belongs to two resources"),
    ],
)
def test_bad_arm_seed_entries_are_named(tmp_path: Path, arm: str, fragment: str) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "identities:\n"
        "  admin: {kind: service-principal, client_id: d0000000-0000-0000-0000-000000000001, client_secret: s}\n"
        "  sp: {kind: service-principal, client_id: d0000000-0000-0000-0000-000000000002, client_secret: s}\n"
        "  ua: {kind: user-assigned, client_id: d0000000-0000-0000-0000-000000000003}\n"
        f"arm: {arm}\n"
    )
    with pytest.raises(SeedError) as error:
        load_seed(seed)
    assert fragment in str(error.value)


def test_cli_throttles_one_subscription_for_a_number_of_requests(arm_stack: Devstack) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "fault",
            "--state-dir",
            str(arm_stack.state_dir),
            "--endpoint",
            "arm",
            "--subscription",
            arm_stack.subscription_id,
            "--rate-429",
            "1",
            "--retry-after",
            "1",
            "--count",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    arm_stack.reset_counters()
    try:
        assert compute_client(arm_stack).virtual_machines.get(ARM_RG, "vm-c").name == "vm-c"
    finally:
        arm_stack.clear_faults()
    assert arm_stack.count(operation="vm.get", status=429) == 1
    assert arm_stack.count(operation="vm.get", status=200) == 1
