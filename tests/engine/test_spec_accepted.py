"""The volume spec parser reads FlexVolume options and CSI attributes as users write them: every
identity mode, both object listings, and the spellings upstream accepts."""

from __future__ import annotations

import pytest

from devstack.harness.world import TENANT
from driver.model import IdentityMode, ObjectSpec, ObjectType
from driver.spec import parse_volume
from tests.engine.spec_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    CSI_KUBELET,
    FLEX_KUBELET,
    PROVIDER_OBJECTS,
    SA_TOKEN,
    SEED,
    SP_FLEX,
    VM_MI,
    WORKLOAD,
    b64,
    without,
)

# --- examples that work -----------------------------------------------------------------------


def test_seed_flexvolume_pod_identity_options() -> None:
    parsed = parse_volume(SEED)
    spec = parsed.spec
    assert spec.vault_name == "testkv"
    assert spec.tenant_id == TENANT
    assert spec.cloud_name == ""
    assert spec.identity.mode is IdentityMode.POD_IDENTITY
    assert spec.identity.client_id == ""
    assert spec.identity.nmi_port == 2579
    assert spec.objects == (
        ObjectSpec("secret1", ObjectType.SECRET, vault="testkv"),
        ObjectSpec("key1", ObjectType.KEY, vault="testkv"),
        ObjectSpec("cert1", ObjectType.CERT, vault="testkv"),
    )
    assert all(o.mode == 0o644 and o.alias == "" and not o.pinned for o in spec.objects)
    assert spec.pod.name == "nginx-flex-kv-podid"
    assert spec.pod.namespace == "default"
    assert spec.pod.uid == "bb6b2e46-c80d-4c86-920c-8e08736fa211"
    assert spec.pod.service_account == "default"
    assert not parsed.auth
    assert parsed.warnings == ()  # kubelet's keys, resourcegroup, subscriptionid: all known


def test_service_principal_from_flexvolume_secret_ref() -> None:
    # kubelet base64-encodes secretRef values; wrapped lines (as `base64` prints them) are fine.
    wrapped = b64(CLIENT_SECRET)
    attrs = {**SP_FLEX, "kubernetes.io/secret/clientsecret": wrapped[:20] + "\n" + wrapped[20:]}
    parsed = parse_volume(attrs)
    assert parsed.spec.identity.mode is IdentityMode.SERVICE_PRINCIPAL
    assert parsed.spec.identity.client_id == CLIENT_ID
    assert parsed.auth.client_secret == CLIENT_SECRET
    assert CLIENT_SECRET not in repr(parsed)


def test_service_principal_from_csi_secrets_matches_keys_case_insensitively() -> None:
    attrs = without(SP_FLEX, "kubernetes.io/secret/clientid", "kubernetes.io/secret/clientsecret")
    parsed = parse_volume(attrs, {"ClientID": CLIENT_ID, "CLIENTSECRET": CLIENT_SECRET})
    assert parsed.spec.identity.mode is IdentityMode.SERVICE_PRINCIPAL
    assert parsed.spec.identity.client_id == CLIENT_ID
    assert parsed.auth.client_secret == CLIENT_SECRET


def test_unrelated_secret_ref_keys_are_allowed() -> None:
    attrs = {**SP_FLEX, "kubernetes.io/secret/other": b64("\x00binary is fine")}
    assert parse_volume(attrs).warnings == ()


@pytest.mark.parametrize(
    ("extra", "client_id"),
    [
        ({}, ""),
        ({"vmmanagedidentityclientid": CLIENT_ID}, CLIENT_ID),
        ({"userAssignedIdentityID": CLIENT_ID}, CLIENT_ID),
        ({"vmmanagedidentityclientid": CLIENT_ID, "userAssignedIdentityID": CLIENT_ID}, CLIENT_ID),
    ],
    ids=["system-assigned", "flex-user-assigned", "provider-user-assigned", "both-agree"],
)
def test_vm_managed_identity(extra: dict[str, str], client_id: str) -> None:
    parsed = parse_volume({**VM_MI, **extra})
    assert parsed.spec.identity.mode is IdentityMode.VM_MANAGED_IDENTITY
    assert parsed.spec.identity.client_id == client_id
    assert not parsed.auth


def test_vm_identity_client_id_without_vm_mode_is_a_warning() -> None:
    parsed = parse_volume({**SEED, "vmmanagedidentityclientid": CLIENT_ID})
    assert parsed.spec.identity.mode is IdentityMode.POD_IDENTITY
    assert any("vmmanagedidentityclientid ignored" in w for w in parsed.warnings)


def test_workload_identity_with_tokens_in_attributes() -> None:
    parsed = parse_volume(WORKLOAD)
    spec = parsed.spec
    assert spec.identity.mode is IdentityMode.WORKLOAD_IDENTITY
    assert spec.identity.client_id == CLIENT_ID
    assert parsed.auth.sa_token == SA_TOKEN
    assert parsed.auth.sa_token_expiry == 1893456000.0  # 2030-01-01T00:00:00Z
    assert spec.pod.name == "app-0"
    assert spec.pod.namespace == "apps"
    assert spec.pod.service_account == "app"
    assert spec.objects == (ObjectSpec("secret1", ObjectType.SECRET, vault="testkv"),)
    assert parsed.warnings == ()
    assert SA_TOKEN not in repr(parsed)


def test_workload_identity_with_tokens_in_secrets_and_unknown_expiry() -> None:
    attrs = without(WORKLOAD, "csi.storage.k8s.io/serviceAccount.tokens")
    tokens = (
        '{"api://AzureADTokenExchange": {"token": "' + SA_TOKEN + '"}, "other": {"token": "x"}}'
    )
    parsed = parse_volume(attrs, {"csi.storage.k8s.io/serviceAccount.tokens": tokens})
    assert parsed.auth.sa_token == SA_TOKEN
    assert parsed.auth.sa_token_expiry == 0.0


def test_provider_style_objects_yaml() -> None:
    attrs = {**without(WORKLOAD, "objects"), "objects": PROVIDER_OBJECTS}
    objects = parse_volume(attrs).spec.objects
    assert objects == (
        ObjectSpec("secret1", ObjectType.SECRET, vault="testkv"),
        ObjectSpec("key1", ObjectType.KEY, alias="keys/key1.pem", mode=0o600, vault="testkv"),
        ObjectSpec(
            "cert1",
            ObjectType.SECRET,
            alias="tls/cert1.pfx",
            format="pfx",
            encoding="base64",
            mode=0o640,  # unquoted 0640 is read as the octal string, not the YAML 1.1 int
            vault="testkv",
        ),
        ObjectSpec("db-password", ObjectType.SECRET, version_history=3, vault="testkv"),
        ObjectSpec(
            "cert1", ObjectType.CERT, version="0123abc", alias="tls/cert1.pem", vault="testkv"
        ),
    )
    assert objects[4].pinned and not objects[0].pinned


def test_keys_are_case_insensitive() -> None:
    attrs = {
        "UsePodIdentity": "TRUE",
        "KeyVaultName": "testkv",
        "KEYVAULTOBJECTNAMES": "a;b",
        "KeyVaultObjectTypes": "Secret;CERT",
        "TenantId": TENANT,
        "NmiPort": "8080",
        "CloudName": "AzureChinaCloud",
        **FLEX_KUBELET,
    }
    spec = parse_volume(attrs).spec
    assert spec.identity.mode is IdentityMode.POD_IDENTITY
    assert spec.identity.nmi_port == 8080
    assert spec.cloud_name == "AzureChinaCloud"
    assert [(o.name, o.type) for o in spec.objects] == [
        ("a", ObjectType.SECRET),
        ("b", ObjectType.CERT),
    ]


def test_empty_booleans_are_false() -> None:
    attrs = {**SEED, "usevmmanagedidentity": "", "useAzureTokenProxy": " "}
    assert parse_volume(attrs).spec.identity.mode is IdentityMode.POD_IDENTITY


def test_the_same_key_spelled_twice_with_the_same_value_is_fine() -> None:
    spec = parse_volume({**SEED, "tenantId": TENANT, "tenantID": TENANT}).spec
    assert spec.tenant_id == TENANT


def test_legacy_singular_keys() -> None:
    attrs = {
        **without(SEED, "keyvaultobjectnames", "keyvaultobjecttypes", "keyvaultobjectversions"),
        "keyvaultobjectname": "secret1",
        "keyvaultobjecttype": "secret",
        "keyvaultobjectversion": "abc123",
    }
    assert parse_volume(attrs).spec.objects == (
        ObjectSpec("secret1", ObjectType.SECRET, version="abc123", vault="testkv"),
    )


def test_empty_plural_falls_back_to_singular() -> None:
    attrs = {
        **without(SEED, "keyvaultobjectnames", "keyvaultobjecttypes"),
        "keyvaultobjectnames": "",
        "keyvaultobjectname": "only",
        "keyvaultobjecttype": "key",
    }
    assert [o.name for o in parse_volume(attrs).spec.objects] == ["only"]


def test_versions_list_empty_entries_and_latest_mean_latest() -> None:
    attrs = {**SEED, "keyvaultobjectversions": "v1;;latest"}
    assert [o.version for o in parse_volume(attrs).spec.objects] == ["v1", "", ""]


def test_entirely_empty_versions_and_aliases_mean_not_given() -> None:
    attrs = {**SEED, "keyvaultobjectversions": "  ", "keyvaultobjectaliases": ""}
    objects = parse_volume(attrs).spec.objects
    assert [(o.version, o.alias, o.path) for o in objects] == [
        ("", "", "secret1"),
        ("", "", "key1"),
        ("", "", "cert1"),
    ]


def test_aliases_are_normalised_and_may_use_sub_folders() -> None:
    attrs = {**SEED, "keyvaultobjectaliases": "./app//db.txt;keys/key1.pem;tls/a/b/cert.pem"}
    assert [o.path for o in parse_volume(attrs).spec.objects] == [
        "app/db.txt",
        "keys/key1.pem",
        "tls/a/b/cert.pem",
    ]


def test_siblings_and_dotfiles_inside_folders_are_fine() -> None:
    attrs = {**SEED, "keyvaultobjectaliases": "dir/a;dir/b;dir/..hidden"}
    assert [o.path for o in parse_volume(attrs).spec.objects] == ["dir/a", "dir/b", "dir/..hidden"]


def test_unknown_keys_are_warnings_naming_the_key_only() -> None:
    parsed = parse_volume({**SEED, "keyvaultobjectnmaes": "typo-value", "cloudEnvFilename2": "x"})
    assert len(parsed.warnings) == 2
    assert any('"keyvaultobjectnmaes"' in w for w in parsed.warnings)
    assert any('"cloudEnvFilename2"' in w for w in parsed.warnings)
    assert not any("typo-value" in w for w in parsed.warnings)


def test_pod_info_from_csi_keys() -> None:
    attrs = {**without(SEED, *FLEX_KUBELET), **CSI_KUBELET}
    pod = parse_volume(attrs).spec.pod
    assert (pod.name, pod.namespace, pod.uid, pod.service_account) == (
        "app-0",
        "apps",
        "5f0c6f7e-0000-4000-8000-000000000001",
        "app",
    )
