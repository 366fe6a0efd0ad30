"""Every rule that rejects volume attributes: the error names the key and the fix, reports all
problems at once, and never quotes a secret."""

from __future__ import annotations

import base64

import pytest

from azcommon.errors import InvalidArgument
from devstack.harness.world import TENANT
from driver.spec import parse_volume
from tests.engine.spec_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    SA_TOKEN,
    SEED,
    SP_FLEX,
    VM_MI,
    WORKLOAD,
    b64,
    without,
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
