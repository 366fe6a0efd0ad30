"""The volume spec parser: FlexVolume options and CSI attributes -> ParsedVolume, or a clear error."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import pytest

from azcommon.errors import InvalidArgument
from devstack.harness.world import TENANT
from driver.model import IdentityMode, ObjectSpec, ObjectType
from driver.spec import parse_volume

CLIENT_SECRET = "Sup3r~Secret.Value_that-must-not-leak"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload-that-must-not-leak.sig"

CLIENT_ID = "22222222-2222-2222-2222-222222222222"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def without(attrs: Mapping[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in attrs.items() if k not in keys}


# What kubelet adds to FlexVolume options on its own.
FLEX_KUBELET = {
    "kubernetes.io/pod.name": "nginx-flex-kv-podid",
    "kubernetes.io/pod.namespace": "default",
    "kubernetes.io/pod.uid": "bb6b2e46-c80d-4c86-920c-8e08736fa211",
    "kubernetes.io/serviceAccount.name": "default",
    "kubernetes.io/readwrite": "ro",
    "kubernetes.io/fsType": "",
    "kubernetes.io/mounterArgs.FsGroup": "33",
    "kubernetes.io/pvOrVolumeName": "test",
}
# The seed pod's options from the issue (pod identity), plus kubelet's keys.
SEED = {
    "usepodidentity": "true",
    "keyvaultname": "testkv",
    "keyvaultobjectnames": "secret1;key1;cert1",
    "keyvaultobjecttypes": "secret;key;cert",
    "keyvaultobjectversions": "",
    "resourcegroup": "rg",
    "subscriptionid": "00000000-0000-0000-0000-000000000000",
    "tenantid": TENANT,
    **FLEX_KUBELET,
}
SP_FLEX = {
    **without(SEED, "usepodidentity"),
    "kubernetes.io/secret/clientid": b64(CLIENT_ID),
    "kubernetes.io/secret/clientsecret": b64(CLIENT_SECRET),
}
CSI_KUBELET = {
    "csi.storage.k8s.io/pod.name": "app-0",
    "csi.storage.k8s.io/pod.namespace": "apps",
    "csi.storage.k8s.io/pod.uid": "5f0c6f7e-0000-4000-8000-000000000001",
    "csi.storage.k8s.io/serviceAccount.name": "app",
    "csi.storage.k8s.io/ephemeral": "true",
}
TOKENS = (
    '{"api://AzureADTokenExchange": {"token": "' + SA_TOKEN + '", '
    '"expirationTimestamp": "2030-01-01T00:00:00Z"}}'
)
WORKLOAD = {
    "secretProviderClass": "app-kv",
    "providerName": "azure",
    "keyvaultName": "testkv",
    "tenantID": TENANT,
    "clientID": CLIENT_ID,
    "objects": "array:\n  - |\n    objectName: secret1\n    objectType: secret\n",
    **CSI_KUBELET,
    "csi.storage.k8s.io/serviceAccount.tokens": TOKENS,
}
PROVIDER_OBJECTS = """\
array:
  - |
    objectName: secret1
    objectType: secret
    objectVersion: ""
  - |
    objectName: key1
    objectType: key
    objectAlias: keys/key1.pem
    filePermission: "0600"
  - |
    objectName: cert1
    objectType: secret
    objectFormat: pfx
    objectEncoding: base64
    objectAlias: tls/cert1.pfx
    filePermission: 0640
  - objectName: db-password
    objectType: secret
    objectVersionHistory: "3"
  - {objectName: cert1, objectType: cert, objectAlias: tls/cert1.pem, objectVersion: 0123abc}
"""
VM_MI = {
    "usevmmanagedidentity": "true",
    "keyvaultname": "testkv",
    "keyvaultobjectnames": "secret1",
    "keyvaultobjecttypes": "secret",
    "tenantid": TENANT,
    **FLEX_KUBELET,
}


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


# --- every rule that rejects input ------------------------------------------------------------

OBJECTS_ONE = "array:\n  - objectName: s\n    objectType: secret\n"


def yaml_volume(objects_yaml: str) -> dict[str, str]:
    return {**without(SEED, "keyvaultobjectnames", "keyvaultobjecttypes"), "objects": objects_yaml}


def item(**fields: str) -> str:
    body = "".join(f"    {k}: {v!r}\n" for k, v in fields.items())
    return "array:\n  - |\n" + body


NO_IDENTITY = without(SEED, "usepodidentity")
REJECTED = [
    # Listing objects.
    ("names and objects", {**SEED, "objects": OBJECTS_ONE}, None,
     ["objects", "keyvaultobjectnames", "both given"]),
    ("no objects", without(SEED, "keyvaultobjectnames", "keyvaultobjecttypes"), None,
     ["no objects", "keyvaultobjectnames", "objects"]),
    ("types count", {**SEED, "keyvaultobjecttypes": "secret;key"}, None,
     ["keyvaultobjecttypes has 2 entries", "keyvaultobjectnames has 3", "one per object"]),
    ("versions count", {**SEED, "keyvaultobjectversions": "v1;v2"}, None,
     ["keyvaultobjectversions has 2 entries", "keyvaultobjectnames has 3"]),
    ("aliases count", {**SEED, "keyvaultobjectaliases": "a;b;c;d"}, None,
     ["keyvaultobjectaliases has 4 entries", "keyvaultobjectnames has 3"]),
    ("types missing", without(SEED, "keyvaultobjecttypes"), None,
     ["keyvaultobjecttypes is required"]),
    ("types without names", {**without(SEED, "keyvaultobjectnames")}, None,
     ["keyvaultobjecttypes", "without keyvaultobjectnames"]),
    ("plural and singular", {**SEED, "keyvaultobjectname": "x"}, None,
     ["keyvaultobjectnames and keyvaultobjectname are both given"]),
    ("plural and singular types", {**SEED, "keyvaultobjecttype": "secret"}, None,
     ["keyvaultobjecttypes and keyvaultobjecttype are both given"]),
    ("empty name", {**SEED, "keyvaultobjectnames": "a;;c"}, None,
     ["keyvaultobjectnames entry 2", "object name is empty"]),
    ("trailing semicolon", {**SEED, "keyvaultobjectnames": "a;b;c;", "keyvaultobjecttypes": "secret;secret;secret;secret"}, None,
     ["keyvaultobjectnames entry 4", "empty"]),
    ("bad object name", {**SEED, "keyvaultobjectnames": "a;my secret;c"}, None,
     ["keyvaultobjectnames entry 2", '"my secret"', "not a valid Key Vault object name"]),
    ("unknown type", {**SEED, "keyvaultobjecttypes": "secret;key;certificate"}, None,
     ["keyvaultobjecttypes entry 3", "unknown object type", '"certificate"', 'did you mean "cert"']),
    ("empty type", {**SEED, "keyvaultobjecttypes": "secret;;cert"}, None,
     ["keyvaultobjecttypes entry 2", "object type is empty"]),
    ("bad version", {**SEED, "keyvaultobjectversions": ";a/b;"}, None,
     ["keyvaultobjectversions entry 2", "not a valid object version"]),
    # Vault name.
    ("vault missing", without(SEED, "keyvaultname"), None, ["keyvaultname is required"]),
    ("vault too short", {**SEED, "keyvaultname": "kv"}, None, ["keyvaultname", '"kv"', "3 to 24"]),
    ("vault too long", {**SEED, "keyvaultname": "k" * 25}, None, ["keyvaultname", "3 to 24"]),
    ("vault chars", {**SEED, "keyvaultname": "test_kv"}, None,
     ["keyvaultname", "letters, digits and hyphens"]),
    ("vault start", {**SEED, "keyvaultname": "1testkv"}, None, ["keyvaultname", "start with a letter"]),
    ("vault end", {**SEED, "keyvaultname": "testkv-"}, None,
     ["keyvaultname", "end with a letter or digit"]),
    ("vault double hyphen", {**SEED, "keyvaultname": "test--kv"}, None, ["keyvaultname", '"--"']),
    # Paths.
    ("alias absolute", {**SEED, "keyvaultobjectaliases": "a;/etc/passwd;c"}, None,
     ["keyvaultobjectaliases entry 2", "/etc/passwd", "relative"]),
    ("alias dotdot", {**SEED, "keyvaultobjectaliases": "a;x/../../y;c"}, None,
     ["keyvaultobjectaliases entry 2", '".." component']),
    ("alias parent", {**SEED, "keyvaultobjectaliases": "../a;b;c"}, None,
     ["keyvaultobjectaliases entry 1", '".." component']),
    ("alias ..data", {**SEED, "keyvaultobjectaliases": "..data;b;c"}, None,
     ["keyvaultobjectaliases entry 1", 'must not start with ".."']),
    ("alias ..dir", {**SEED, "keyvaultobjectaliases": "a;..x/b;c"}, None,
     ["keyvaultobjectaliases entry 2", 'must not start with ".."']),
    ("alias empty entry", {**SEED, "keyvaultobjectaliases": "a;;c"}, None,
     ["keyvaultobjectaliases entry 2", "empty"]),
    ("alias dot", {**SEED, "keyvaultobjectaliases": "a;./;c"}, None,
     ["keyvaultobjectaliases entry 2", "empty after normalisation"]),
    ("alias control", {**SEED, "keyvaultobjectaliases": "a;b\nc;c"}, None,
     ["keyvaultobjectaliases entry 2", "control character"]),
    ("alias long component", {**SEED, "keyvaultobjectaliases": "a;" + "x" * 256 + ";c"}, None,
     ["keyvaultobjectaliases entry 2", "longer than 255"]),
    ("duplicate aliases", {**SEED, "keyvaultobjectaliases": "same;./same;c"}, None,
     ["object 1", "object 2", '"same"', "both write", "keyvaultobjectaliases"]),
    ("duplicate names", {**SEED, "keyvaultobjectnames": "a;b;a"}, None,
     ["object 1", "object 3", '"a"', "both write"]),
    ("alias collides with a name", yaml_volume(
        "array:\n  - {objectName: a, objectType: secret}\n"
        "  - {objectName: b, objectType: secret, objectAlias: ./a}\n"), None,
     ["item 1", "item 2", '"a"', "both write", "objectAlias"]),
    ("file is also a directory", {**SEED, "keyvaultobjectaliases": "a;a/b;c"}, None,
     ["object 1", '"a"', "object 2", "directory", '"a/b"']),
    ("history dir clashes with a file", yaml_volume(
        "array:\n  - {objectName: s, objectType: secret, objectAlias: x, objectVersionHistory: '2'}"
        "\n  - {objectName: t, objectType: secret, objectAlias: x/1}\n"), None,
     ["item 1", "item 2", '"x/1"', "both write"]),
    ("history needs its path as a dir", yaml_volume(
        "array:\n  - {objectName: s, objectType: secret, objectVersionHistory: '2'}"
        "\n  - {objectName: t, objectType: secret, objectAlias: s}\n"), None,
     ["item 2", '"s"', "directory", '"s/0"']),
    # YAML objects fields.
    ("bad filePermission digit", yaml_volume(item(objectName="s", objectType="secret", filePermission="0999")), None,
     ["filePermission", '"0999"', "not an octal"]),
    ("filePermission too big", yaml_volume(item(objectName="s", objectType="secret", filePermission="1777")), None,
     ["filePermission", '"1777"', "0777"]),
    ("filePermission words", yaml_volume(item(objectName="s", objectType="secret", filePermission="rw-r--r--")), None,
     ["filePermission", "not an octal"]),
    ("format on key", yaml_volume(item(objectName="k", objectType="key", objectFormat="pem")), None,
     ["objectFormat", "only to objectType secret", "key"]),
    ("encoding on cert", yaml_volume(item(objectName="c", objectType="cert", objectEncoding="base64")), None,
     ["objectEncoding", "only to objectType secret", "cert"]),
    ("unknown format", yaml_volume(item(objectName="s", objectType="secret", objectFormat="der")), None,
     ["objectFormat", "unknown format", '"der"']),
    ("unknown encoding", yaml_volume(item(objectName="s", objectType="secret", objectEncoding="latin1")), None,
     ["objectEncoding", "unknown encoding", '"latin1"']),
    ("history zero", yaml_volume(item(objectName="s", objectType="secret", objectVersionHistory="0")), None,
     ["objectVersionHistory", '"0"', "between 1 and 100"]),
    ("history too big", yaml_volume(item(objectName="s", objectType="secret", objectVersionHistory="101")), None,
     ["objectVersionHistory", "between 1 and 100"]),
    ("history negative", yaml_volume(item(objectName="s", objectType="secret", objectVersionHistory="-1")), None,
     ["objectVersionHistory", "not an integer"]),
    ("item field twice", yaml_volume("array:\n  - {objectName: s, objectname: t, objectType: secret}\n"), None,
     ["objects item 1", "objectName is given twice"]),
    ("item field not a string", yaml_volume("array:\n  - {objectName: [s], objectType: secret}\n"), None,
     ["objects item 1", "objectName must be a string"]),
    ("item missing name", yaml_volume(OBJECTS_ONE + "  - objectType: secret\n"), None,
     ["objects item 2 objectName", "empty"]),
    ("item missing type", yaml_volume("array:\n  - objectName: s\n"), None,
     ["objects item 1", "objectType", "empty"]),
    ("item unknown type", yaml_volume("array:\n  - {objectName: s, objectType: password}\n"), None,
     ["objects item 1", "objectType", "unknown object type", '"password"']),
    ("item alias absolute", yaml_volume(item(objectName="s", objectType="secret", objectAlias="/x")), None,
     ["objects item 1", "objectAlias", "relative"]),
    ("item not a mapping", yaml_volume("array:\n  - just-a-word\n"), None,
     ["objects item 1", "must be a mapping"]),
    ("item empty string", yaml_volume("array:\n  - ''\n"), None, ["objects item 1", "empty"]),
    ("item bad yaml", yaml_volume("array:\n  - |\n    objectName: [unclosed\n"), None,
     ["objects item 1", "not valid YAML", "line"]),
    ("objects bad yaml", yaml_volume("array: [\n"), None, ["objects", "not valid YAML", "line"]),
    ("objects not a mapping", yaml_volume("- objectName: s\n"), None,
     ["objects", "must be a YAML mapping", "array"]),
    ("objects unknown root field", yaml_volume("items: []\n"), None,
     ["objects", "unknown field", '"items"']),
    ("objects empty array", yaml_volume("array: []\n"), None, ["objects", "lists no objects"]),
    ("objects array missing", yaml_volume("array:\n"), None, ["objects", "lists no objects"]),
    ("objects array not a list", yaml_volume("array: {a: b}\n"), None, ["objects", "must be a list"]),
    ("objects and types", {**yaml_volume(OBJECTS_ONE), "keyvaultobjecttypes": "secret"}, None,
     ["objects", "keyvaultobjecttypes", "both given"]),
    # Booleans and numbers.
    ("bool yes", {**SEED, "usepodidentity": "yes"}, None, ['usepodidentity must be "true" or "false"', '"yes"']),
    ("bool one", {**VM_MI, "usevmmanagedidentity": "1"}, None, ['usevmmanagedidentity must be "true" or "false"']),
    ("nmiport zero", {**SEED, "nmiport": "0"}, None, ["nmiport", "between 1 and 65535", '"0"']),
    ("nmiport big", {**SEED, "nmiport": "65536"}, None, ["nmiport", "between 1 and 65535"]),
    ("nmiport word", {**SEED, "nmiport": "http"}, None, ["nmiport", "integer"]),
    ("nmiport unicode digits", {**SEED, "nmiport": "\u0662\u0665\u0667\u0669"}, None, ["nmiport", "integer"]),
    # Identity.
    ("workload and vm", {**WORKLOAD, "useVMManagedIdentity": "true"}, None,
     ["more than one identity mode", "clientID", "useVMManagedIdentity"]),
    ("workload and sp", WORKLOAD, {"clientid": CLIENT_ID, "clientsecret": CLIENT_SECRET},
     ["more than one identity mode", "clientID", "service principal"]),
    ("no identity", NO_IDENTITY, None,
     ["no identity mode", "usepodidentity", "usevmmanagedidentity", "clientID", "clientsecret"]),
    ("sp without secret", {**NO_IDENTITY, "kubernetes.io/secret/clientid": b64(CLIENT_ID)}, None,
     ["service principal", "clientid but no clientsecret"]),
    ("sp without id", {**NO_IDENTITY, "kubernetes.io/secret/clientsecret": b64(CLIENT_SECRET)}, None,
     ["service principal", "clientsecret but no clientid"]),
    ("csi sp without secret", NO_IDENTITY, {"clientid": CLIENT_ID},
     ["clientid but no clientsecret"]),
    ("sp sources disagree", SP_FLEX, {"clientid": CLIENT_ID, "clientsecret": "different"},
     ["clientsecret", "different values"]),
    ("tenant missing", without(SEED, "tenantid"), None, ["tenantid is required"]),
    ("tenant bad", {**SEED, "tenantid": "a b"}, None, ["tenantid", "not a valid tenant id"]),
    ("pod identity without pod", without(SEED, "kubernetes.io/pod.name", "kubernetes.io/pod.namespace"), None,
     ["usepodidentity", "name and namespace", "podInfoOnMount"]),
    ("pod identity without namespace", without(SEED, "kubernetes.io/pod.namespace"), None,
     ["usepodidentity", "namespace"]),
    ("pod names disagree", {**SEED, "csi.storage.k8s.io/pod.name": "other"}, None,
     ["kubernetes.io/pod.name", "csi.storage.k8s.io/pod.name", "disagree"]),
    ("pod name invalid", {**SEED, "kubernetes.io/pod.name": "Bad\nName"}, None,
     ["kubernetes.io/pod.name", "not a valid Kubernetes name"]),
    ("pod uid invalid", {**SEED, "kubernetes.io/pod.uid": "../x"}, None,
     ["kubernetes.io/pod.uid", "not a valid uid"]),
    ("workload without token", without(WORKLOAD, "csi.storage.k8s.io/serviceAccount.tokens"), None,
     ["clientID", "api://AzureADTokenExchange", "tokenRequests"]),
    ("workload without service account", without(WORKLOAD, "csi.storage.k8s.io/serviceAccount.name"), None,
     ["workload identity needs", "service account name"]),
    ("workload token for another audience", {**WORKLOAD, "csi.storage.k8s.io/serviceAccount.tokens": '{"other": {"token": "t"}}'}, None,
     ["api://AzureADTokenExchange", "tokenRequests"]),
    ("tokens not json", {**WORKLOAD, "csi.storage.k8s.io/serviceAccount.tokens": '{"api://AzureADTokenExchange": {"token": "' + SA_TOKEN}, None,
     ["serviceAccount.tokens", "not valid JSON"]),
    ("tokens not an object", {**WORKLOAD, "csi.storage.k8s.io/serviceAccount.tokens": "[]"}, None,
     ["serviceAccount.tokens", "must be a JSON object"]),
    ("token entry without token", {**WORKLOAD, "csi.storage.k8s.io/serviceAccount.tokens": '{"api://AzureADTokenExchange": {"tok": 1}}'}, None,
     ["serviceAccount.tokens", "no token string"]),
    ("token expiry not a string", {**WORKLOAD, "csi.storage.k8s.io/serviceAccount.tokens": '{"a": {"token": "t", "expirationTimestamp": 5}}'}, None,
     ["serviceAccount.tokens", "expirationTimestamp", "must be a string"]),
    ("tokens in secrets malformed", without(WORKLOAD, "csi.storage.k8s.io/serviceAccount.tokens"), {"csi.storage.k8s.io/serviceAccount.tokens": "{"},
     ["secret", "serviceAccount.tokens", "not valid JSON"]),
    ("bad base64 secret", {**SP_FLEX, "kubernetes.io/secret/clientsecret": CLIENT_SECRET}, None,
     ["kubernetes.io/secret/clientsecret", "not valid base64"]),
    ("bad base64 other key", {**SP_FLEX, "kubernetes.io/secret/extra": "!!!"}, None,
     ["kubernetes.io/secret/extra", "not valid base64"]),
    ("secret not utf-8", {**SP_FLEX, "kubernetes.io/secret/clientsecret": base64.b64encode(b"\xff\xfe").decode()}, None,
     ["kubernetes.io/secret/clientsecret", "UTF-8"]),
    ("bad client id", {**WORKLOAD, "clientID": "not a guid"}, None, ["clientID", "not a valid client id"]),
    ("vm client ids differ", {**VM_MI, "vmmanagedidentityclientid": CLIENT_ID, "userAssignedIdentityID": TENANT}, None,
     ["vmmanagedidentityclientid", "userAssignedIdentityID", "different identities"]),
    ("token proxy", {**WORKLOAD, "useAzureTokenProxy": "true"}, None, ["useAzureTokenProxy", "not supported"]),
    # Keys.
    ("key twice, values differ", {**SEED, "KeyVaultName": "otherkv"}, None,
     ["keyvaultname", "more than once", "KeyVaultName", "different values"]),
    ("secret key twice", SP_FLEX, {"clientsecret": CLIENT_SECRET, "ClientSecret": "x"},
     ["secret", "clientsecret", "more than once"]),
    ("cloud name bad", {**SEED, "cloudname": "Azure Public"}, None, ["cloudname", "not a valid cloud name"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("attrs", "secrets", "fragments"),
    [pytest.param(a, s, f, id=name) for name, a, s, f in REJECTED],
)
def test_rejected(
    attrs: dict[str, str], secrets: dict[str, str] | None, fragments: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_volume(attrs, secrets)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert info.value.code == "INVALID_ARGUMENT"
    # Never a secret or token in a message, whatever went wrong.
    assert CLIENT_SECRET not in message
    assert b64(CLIENT_SECRET) not in message
    assert SA_TOKEN not in message
    assert "payload-that-must-not-leak" not in message


def test_sp_client_id_is_not_quoted_in_messages() -> None:
    attrs = {**NO_IDENTITY, "kubernetes.io/secret/clientid": b64("bad id!"),
             "kubernetes.io/secret/clientsecret": b64(CLIENT_SECRET)}  # fmt: skip
    with pytest.raises(InvalidArgument, match="clientid in the volume's secret") as info:
        parse_volume(attrs)
    assert "bad id!" not in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    attrs = {
        **without(SEED, "tenantid"),
        "keyvaultname": "x",
        "keyvaultobjecttypes": "secret",
        "usevmmanagedidentity": "true",
    }
    with pytest.raises(InvalidArgument) as info:
        parse_volume(attrs)
    message = str(info.value)
    for fragment in ("keyvaultname", "tenantid is required",
                     "keyvaultobjecttypes has 1 entries"):  # fmt: skip
        assert fragment in message


def test_all_or_nothing_non_string_values_are_rejected() -> None:
    bad: dict[str, object] = {**SEED, "nmiport": 2579}
    with pytest.raises(InvalidArgument, match="must be strings"):
        parse_volume(bad)  # type: ignore[arg-type]
