"""Property tests for the spec parser: it returns a complete, consistent ParsedVolume or raises
InvalidArgument, never anything else, and valid specs written either way parse back exactly."""

from __future__ import annotations

import base64
import json
import posixpath
import re
import string
from dataclasses import dataclass

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azcommon.errors import InvalidArgument
from devstack.harness.world import TENANT
from driver.model import IdentityMode, ObjectSpec, ObjectType, ParsedVolume
from driver.spec import MAX_VERSION_HISTORY, WORKLOAD_IDENTITY_AUDIENCE, parse_volume

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CLIENT_ID = "22222222-2222-2222-2222-222222222222"

KNOWN_KEYS = [
    "keyvaultname", "keyvaultobjectnames", "keyvaultobjecttypes", "keyvaultobjectversions",
    "keyvaultobjectaliases", "keyvaultobjectname", "keyvaultobjecttype", "keyvaultobjectversion",
    "tenantid", "tenantId", "tenantID", "usepodidentity", "usePodIdentity", "nmiport",
    "usevmmanagedidentity", "useVMManagedIdentity", "vmmanagedidentityclientid",
    "userAssignedIdentityID", "clientID", "cloudname", "cloudName", "objects", "resourcegroup",
    "subscriptionid", "secretProviderClass", "providerName", "useAzureTokenProxy",
    "kubernetes.io/pod.name", "kubernetes.io/pod.namespace", "kubernetes.io/pod.uid",
    "kubernetes.io/serviceAccount.name", "kubernetes.io/readwrite", "kubernetes.io/fsType",
    "kubernetes.io/secret/clientid", "kubernetes.io/secret/clientsecret",
    "kubernetes.io/secret/other", "csi.storage.k8s.io/pod.name",
    "csi.storage.k8s.io/pod.namespace", "csi.storage.k8s.io/pod.uid",
    "csi.storage.k8s.io/serviceAccount.name", "csi.storage.k8s.io/ephemeral",
    "csi.storage.k8s.io/serviceAccount.tokens",
]  # fmt: skip
SECRET_KEYS = [
    "clientid",
    "clientsecret",
    "ClientSecret",
    "csi.storage.k8s.io/serviceAccount.tokens",
]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tokens_json(token: str, expiry: str = "2030-01-01T00:00:00Z") -> str:
    entry = {"token": token, "expirationTimestamp": expiry}
    return json.dumps({WORKLOAD_IDENTITY_AUDIENCE: entry})


# --- strategies -------------------------------------------------------------------------------

keys = st.one_of(
    st.sampled_from(KNOWN_KEYS).flatmap(
        lambda k: st.sampled_from([k, k.lower(), k.upper(), k.swapcase()])
    ),
    st.text(max_size=20),
)
interesting_values = st.sampled_from(
    [
        "", " ", "true", "false", "TRUE", "yes", "1", "testkv", "a--b", "kv", "secret;key;cert",
        "secret", "key", "cert", "certificate", "a;b;c", "a;;c", "a;b;", ";", "2579", "0",
        "65536", TENANT, CLIENT_ID, "latest", "..", "../x", "/abs", "a/b", "a/../b", "..data",
        "./", "0644", "0999", b64(CLIENT_ID), b64("s3cret"), "!!!notbase64", "{", "[]", "null",
        tokens_json("tok"), tokens_json("tok", "not a time"), '{"a": {"token": 5}}',
        "array:\n  - objectName: s\n    objectType: secret\n",
        "array:\n  - |\n    objectName: s\n    objectType: key\n    objectFormat: pfx\n",
        "array: [\n", "array:\n  - {objectName: s, objectType: secret, objectVersionHistory: '2'}"
        "\n  - {objectName: t, objectType: secret, objectAlias: s/0}\n",
        "array: !!python/object:os.system x", "array: &a [*a]", "[[[[[[[[[[[[", "- - - -",
        "array:\n  - !!binary aGVsbG8=\n", "array: {objectName: s}", "\ud800",
    ]
)  # fmt: skip
yamlish = st.builds(
    lambda parts: "array:\n" + "".join(f"  - {p}\n" for p in parts),
    st.lists(
        st.one_of(
            st.text(max_size=30),
            st.dictionaries(
                st.sampled_from(["objectName", "objectType", "objectAlias", "filePermission",
                                 "objectFormat", "objectEncoding", "objectVersionHistory", "x"]),
                st.one_of(st.text(max_size=10), st.sampled_from(["secret", "key", "cert", "s", "0644"])),
                max_size=5,
            ).map(lambda d: json.dumps(d)),
        ),
        max_size=4,
    ),
)  # fmt: skip
values = st.one_of(
    interesting_values,
    st.text(max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=10),
    st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()),
    yamlish,
)
attr_maps = st.dictionaries(keys, values, max_size=14)
secret_maps = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(SECRET_KEYS) | keys, values, max_size=4)
)

object_names = st.from_regex(r"[A-Za-z0-9-]{1,20}", fullmatch=True)
versions = st.one_of(st.just(""), st.from_regex(r"[0-9a-f]{32}", fullmatch=True))
path_components = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True),
    st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=8),
)
vault_names = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(string.ascii_letters),
    st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=22),
    st.sampled_from(string.ascii_letters + string.digits),
).filter(lambda name: "--" not in name)


@st.composite
def unique_alias(draw: st.DrawFn, index: int) -> str:
    # The "_<index>" suffix on the first component keeps aliases from colliding or nesting.
    first = draw(path_components) + f"_{index}"
    rest = draw(st.lists(path_components, max_size=2))
    return "/".join([first, *rest])


@dataclass
class Volume:
    attributes: dict[str, str]
    secrets: dict[str, str] | None
    objects: tuple[ObjectSpec, ...]
    mode: IdentityMode
    client_id: str
    client_secret: str
    token: str


@st.composite
def list_style_objects(
    draw: st.DrawFn, vault: str
) -> tuple[dict[str, str], tuple[ObjectSpec, ...]]:
    names = draw(st.lists(object_names, min_size=1, max_size=6, unique=True))
    types = [draw(st.sampled_from(list(ObjectType))) for _ in names]
    attrs = {
        "keyvaultobjectnames": ";".join(names),
        "keyvaultobjecttypes": ";".join(draw(st.sampled_from([t.value, t.value.upper(), f" {t.value} "])) for t in types),
    }  # fmt: skip
    object_versions = [""] * len(names)
    if draw(st.booleans()):
        object_versions = [draw(versions) for _ in names]
        attrs["keyvaultobjectversions"] = ";".join(object_versions)
    aliases = [""] * len(names)
    if draw(st.booleans()):
        aliases = [draw(unique_alias(i)) for i in range(len(names))]
        attrs["keyvaultobjectaliases"] = ";".join(aliases)
    objects = tuple(
        ObjectSpec(name=n, type=t, version=v, alias=a, vault=vault)
        for n, t, v, a in zip(names, types, object_versions, aliases, strict=True)
    )
    return attrs, objects


@st.composite
def yaml_style_objects(
    draw: st.DrawFn, vault: str
) -> tuple[dict[str, str], tuple[ObjectSpec, ...]]:
    names = draw(st.lists(object_names, min_size=1, max_size=6, unique=True))
    items: list[object] = []
    objects = []
    for i, name in enumerate(names):
        object_type = draw(st.sampled_from(list(ObjectType)))
        fields = {"objectName": name, "objectType": object_type.value}
        version = draw(versions)
        if version or draw(st.booleans()):
            fields["objectVersion"] = version or draw(st.sampled_from(["", "latest"]))
        alias = draw(unique_alias(i)) if draw(st.booleans()) else ""
        if alias:
            fields["objectAlias"] = alias
        fmt, encoding = "", "utf-8"
        if object_type is ObjectType.SECRET:
            fmt = draw(st.sampled_from(["", "pem", "pfx"]))
            encoding = draw(st.sampled_from(["", "utf-8", "base64", "hex"]))
            if fmt:
                fields["objectFormat"] = fmt
            if encoding:
                fields["objectEncoding"] = encoding
        mode = draw(st.one_of(st.none(), st.integers(0, 0o777)))
        if mode is not None:
            fields["filePermission"] = draw(st.sampled_from([f"{mode:04o}", f"{mode:o}"]))
        history = draw(st.one_of(st.just(0), st.integers(1, MAX_VERSION_HISTORY)))
        if history:
            fields["objectVersionHistory"] = str(history)
        # The provider takes each item as a YAML string; we also take plain mappings.
        items.append(yaml.safe_dump(fields) if draw(st.booleans()) else fields)
        objects.append(
            ObjectSpec(
                name=name,
                type=object_type,
                version=version,
                alias=alias,
                format=fmt,
                encoding=encoding or "utf-8",
                mode=0o644 if mode is None else mode,
                version_history=history,
                vault=vault,
            )
        )
    return {"objects": yaml.safe_dump({"array": items})}, tuple(objects)


secret_text = st.text(
    alphabet=string.ascii_letters + string.digits + "~._-", min_size=1, max_size=40
)


@st.composite
def valid_volumes(draw: st.DrawFn) -> Volume:
    vault = draw(vault_names)
    style = list_style_objects if draw(st.booleans()) else yaml_style_objects
    object_attrs, objects = draw(style(vault))
    attrs = {
        "keyvaultname": vault,
        draw(st.sampled_from(["tenantid", "tenantId", "tenantID"])): TENANT,
    }
    attrs.update(object_attrs)
    pod_prefix = draw(st.sampled_from(["kubernetes.io/", "csi.storage.k8s.io/"]))
    attrs[pod_prefix + "pod.name"] = "app-0"
    attrs[pod_prefix + "pod.namespace"] = "apps"
    secrets: dict[str, str] | None = None
    mode = draw(st.sampled_from(list(IdentityMode)))
    client_id, client_secret, token = "", "", ""
    if mode is IdentityMode.POD_IDENTITY:
        attrs["usePodIdentity"] = draw(st.sampled_from(["true", "True", "TRUE"]))
    elif mode is IdentityMode.VM_MANAGED_IDENTITY:
        attrs["useVMManagedIdentity"] = "true"
        client_id = draw(st.sampled_from(["", CLIENT_ID]))
        if client_id:
            attrs[
                draw(st.sampled_from(["vmmanagedidentityclientid", "userAssignedIdentityID"]))
            ] = client_id
    elif mode is IdentityMode.WORKLOAD_IDENTITY:
        client_id, token = CLIENT_ID, draw(secret_text)
        attrs["clientID"] = client_id
        # Workload identity federates the pod's service account: kubelet always names it.
        attrs[pod_prefix + "serviceAccount.name"] = "app"
        if draw(st.booleans()):
            attrs["csi.storage.k8s.io/serviceAccount.tokens"] = tokens_json(token)
        else:
            secrets = {"csi.storage.k8s.io/serviceAccount.tokens": tokens_json(token)}
    else:
        client_id, client_secret = CLIENT_ID, draw(secret_text)
        if draw(st.booleans()):
            attrs["kubernetes.io/secret/clientid"] = b64(client_id)
            attrs["kubernetes.io/secret/clientsecret"] = b64(client_secret)
        else:
            secrets = {"clientid": client_id, "clientsecret": client_secret}
    return Volume(attrs, secrets, objects, mode, client_id, client_secret, token)


# --- invariants -------------------------------------------------------------------------------


def files_of(obj: ObjectSpec) -> list[str]:
    if obj.version_history:
        return [f"{obj.path}/{i}" for i in range(obj.version_history)]
    return [obj.path]


def assert_consistent(parsed: ParsedVolume) -> None:
    spec, auth = parsed.spec, parsed.auth
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]", spec.vault_name)
    assert "--" not in spec.vault_name
    assert spec.tenant_id
    assert spec.objects
    files: set[str] = set()
    for obj in spec.objects:
        assert obj.vault == spec.vault_name
        assert isinstance(obj.type, ObjectType)
        assert re.fullmatch(r"[A-Za-z0-9-]{1,127}", obj.name)
        assert obj.format in ("", "pem", "pfx")
        assert obj.encoding in ("utf-8", "base64", "hex")
        if obj.type is not ObjectType.SECRET:
            assert (obj.format, obj.encoding) == ("", "utf-8")
        assert 0 <= obj.mode <= 0o777
        assert 0 <= obj.version_history <= MAX_VERSION_HISTORY
        path = obj.path
        assert path and posixpath.normpath(path) == path
        assert not path.startswith("/") and not path.startswith("..")
        assert ".." not in path.split("/")
        for file in files_of(obj):
            assert file not in files
            files.add(file)
    for file in files:
        parts = file.split("/")
        assert not any("/".join(parts[:d]) in files for d in range(1, len(parts)))
    identity = spec.identity
    assert 1 <= identity.nmi_port <= 65535
    if identity.mode is IdentityMode.SERVICE_PRINCIPAL:
        assert identity.client_id and auth.client_secret and not auth.sa_token
    elif identity.mode is IdentityMode.WORKLOAD_IDENTITY:
        assert identity.client_id and auth.sa_token and not auth.client_secret
        assert spec.pod.namespace and spec.pod.service_account
    else:
        assert not auth
    if identity.mode is IdentityMode.POD_IDENTITY:
        assert spec.pod.name and spec.pod.namespace and identity.client_id == ""
    assert all(isinstance(w, str) for w in parsed.warnings)


def parse_or_reject(attrs: dict[str, str], secrets: dict[str, str] | None) -> None:
    try:
        parsed = parse_volume(attrs, secrets)
    except InvalidArgument as error:
        assert str(error)
        return
    assert_consistent(parsed)
    assert parse_volume(attrs, secrets) == parsed  # deterministic


# --- properties -------------------------------------------------------------------------------


@SETTINGS
@given(attr_maps, secret_maps)
def test_any_map_parses_completely_or_raises_invalid_argument(
    attrs: dict[str, str], secrets: dict[str, str] | None
) -> None:
    parse_or_reject(attrs, secrets)


@SETTINGS
@given(
    valid_volumes(), st.lists(st.tuples(keys, st.one_of(values, st.none())), min_size=1, max_size=4)
)
def test_a_mutated_valid_volume_parses_completely_or_raises_invalid_argument(
    volume: Volume, changes: list[tuple[str, str | None]]
) -> None:
    attrs = dict(volume.attributes)
    for key, value in changes:
        if value is None:
            attrs.pop(key, None)
        else:
            attrs[key] = value
    parse_or_reject(attrs, volume.secrets)


@SETTINGS
@given(valid_volumes())
def test_valid_volumes_round_trip(volume: Volume) -> None:
    parsed = parse_volume(volume.attributes, volume.secrets)
    assert_consistent(parsed)
    assert parsed.spec.objects == volume.objects
    assert parsed.spec.identity.mode is volume.mode
    assert parsed.spec.identity.client_id == volume.client_id
    assert parsed.auth.client_secret == volume.client_secret
    assert parsed.auth.sa_token == volume.token
    assert parsed.spec.pod.name == "app-0"
    assert parsed.warnings == ()


@SETTINGS
@given(valid_volumes(), st.data())
def test_key_case_does_not_matter(volume: Volume, data: st.DataObject) -> None:
    flips = {
        k: data.draw(st.sampled_from([k, k.upper(), k.lower(), k.swapcase()]))
        for k in volume.attributes
    }
    attrs = {flips[k]: v for k, v in volume.attributes.items()}
    assert parse_volume(attrs, volume.secrets) == parse_volume(volume.attributes, volume.secrets)
