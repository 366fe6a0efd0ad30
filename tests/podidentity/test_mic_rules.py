"""MIC's pure rules: which VM or scale set holds a node's identities, names that never collide,
upstream's credential forms, and settings that document themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podidentity.mic.cloud import CloudConfigError, load_cloud_config
from podidentity.mic.model import NAME_LIMIT, Target, assigned_name, target_of
from podidentity.mic.settings import MicSettings, build_parser, parse_settings

SUB = "33333333-3333-3333-3333-333333333333"


def test_scale_set_nodes_share_their_scale_set_and_vm_nodes_have_their_vm() -> None:
    base = f"azure:///subscriptions/{SUB}/resourceGroups/MC_rg/providers/Microsoft.Compute"
    one = target_of(f"{base}/virtualMachineScaleSets/aks-pool-1/virtualMachines/0")
    two = target_of(f"{base}/virtualMachineScaleSets/AKS-pool-1/virtualMachines/7")
    assert one == two == Target(SUB, "mc_rg", "vmss", "aks-pool-1")
    assert target_of(f"{base}/virtualMachines/node-3") == Target(SUB, "mc_rg", "vm", "node-3")
    assert target_of("kind://docker/kind/kind-control-plane") is None
    assert target_of("") is None


_dns = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z", fullmatch=True)


@given(st.tuples(_dns, _dns, _dns, _dns), st.tuples(_dns, _dns, _dns, _dns))
def test_assigned_names_differ_whenever_pod_or_identity_differ(
    a: tuple[str, str, str, str], b: tuple[str, str, str, str]
) -> None:
    if a != b:
        assert assigned_name(*a) != assigned_name(*b)


def test_assigned_names_are_valid_object_names_even_for_long_inputs() -> None:
    name = assigned_name("ns", "p" * 253, "ns", "i" * 253)
    assert len(name) <= NAME_LIMIT and name[0].isalnum() and name[-1].isalnum()
    # Upstream's ambiguity: pod "a-b" + identity "c" against pod "a" + identity "b-c".
    assert assigned_name("ns", "a-b", "ns", "c") != assigned_name("ns", "a", "ns", "b-c")


def test_azure_json_with_a_service_principal(tmp_path: Path) -> None:
    path = tmp_path / "azure.json"
    path.write_text(json.dumps({
        "cloud": "AzureUSGovernmentCloud", "tenantId": "t", "subscriptionId": SUB,
        "resourceGroup": "rg", "vmType": "vmss", "aadClientId": "c", "aadClientSecret": "s3cr3t",
    }))  # fmt: skip
    config = load_cloud_config(path)
    assert (config.subscription_id, config.resource_group, config.vm_type) == (SUB, "rg", "vmss")
    assert config.arm_endpoint == "https://management.usgovcloudapi.net"
    assert "s3cr3t" not in repr(config)


def test_environment_with_a_user_assigned_managed_identity() -> None:
    config = load_cloud_config(None, {
        "SUBSCRIPTION_ID": SUB, "RESOURCE_GROUP": "rg", "USE_MSI": "true",
        "USER_ASSIGNED_MSI_CLIENT_ID": "ABC",
    })  # fmt: skip
    assert config.use_managed_identity and config.own_identity == "abc"


def test_a_missing_key_is_named_and_the_secret_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "azure.json"
    path.write_text(json.dumps({"subscriptionId": SUB, "aadClientSecret": "s3cr3t"}))
    with pytest.raises(CloudConfigError) as error:
        load_cloud_config(path)
    message = str(error.value)
    assert "resourceGroup" in message and "aadClientId" in message and "s3cr3t" not in message


def test_every_setting_has_a_flag_with_help_and_upstream_spellings_work() -> None:
    text = build_parser().format_help()
    for name in MicSettings.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text
    settings = parse_settings(["--cloudconfig=/etc/kubernetes/azure.json", "--syncRetryDuration=60",
                               "--immutable-user-msis=A,b", "--namespaced=false"])  # fmt: skip
    assert str(settings.cloud_config) == "/etc/kubernetes/azure.json"
    assert settings.resync_interval == 60.0 and settings.immutable_identities == ("a", "b")
    assert settings.namespaced is False
