"""The parser's rules for the options upstream never had: each bad value is refused naming the
field, and what is accepted survives a round trip through the state store unchanged."""

from __future__ import annotations

import json

import pytest

from azcommon.errors import InvalidArgument
from driver.model import CertPartName, Selector
from driver.spec import parse_volume
from driver.spec.record import check_spec
from driver.volumes import spec_from_dict, spec_to_dict

BASE = {
    "usePodIdentity": "true",
    "keyvaultName": "testkv",
    "tenantId": "11111111-1111-1111-1111-111111111111",
    "csi.storage.k8s.io/pod.name": "app-0",
    "csi.storage.k8s.io/pod.namespace": "apps",
}


def yaml_item(**fields: str) -> dict[str, str]:
    lines = ["array:", "  - |"] + [f"    {k}: {json.dumps(v)}" for k, v in fields.items()]
    return {**BASE, "objects": "\n".join(lines) + "\n"}


def test_every_new_option_round_trips_through_a_record() -> None:
    objects = (
        "array:\n"
        "  - {objectNamePattern: app-*, objectType: secret, objectTags: 'team=web,env=prod',"
        " maxMatches: '5', objectAlias: apps}\n"
        "  - {objectName: pfx-cert, objectType: secret, certParts: 'key:0600,crt,chain,bundle'}\n"
        "  - {objectName: secret1, objectType: secret, keyvaultName: otherkv, optional: 'true',"
        " objectAlias: other}\n"
    )
    attrs = {
        **BASE,
        "objects": objects,
        "cloudName": "AzureStackCloud",
        "cloudEnvFileName": "/etc/kubernetes/azurestackcloud.json",
    }
    spec = parse_volume(attrs).spec
    selecting, split, other = spec.objects
    assert selecting.select == Selector("app-*", ("env=prod", "team=web"), 5)
    assert [(p.part, p.mode) for p in split.cert_parts] == [
        (CertPartName.KEY, 0o600),
        (CertPartName.CRT, 0o644),
        (CertPartName.CHAIN, 0o644),
        (CertPartName.BUNDLE, 0o644),
    ]
    assert (other.vault, other.optional, selecting.vault) == ("otherkv", True, "testkv")
    back = spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))))
    assert back == spec
    check_spec(back)


def test_an_object_name_with_glob_characters_selects() -> None:
    spec = parse_volume(yaml_item(objectName="db-?", objectType="secret")).spec
    assert spec.objects[0].select == Selector(pattern="db-?")


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (yaml_item(objectName="a", objectType="secret", optional="yes"), "optional must be"),
        (yaml_item(objectName="a", objectType="secret", keyvaultName="x"), "keyvaultName"),
        (yaml_item(objectNamePattern="a/*", objectType="secret"), "is not a name glob"),
        (yaml_item(objectTags="noequals", objectType="secret"), "is not key=value"),
        (yaml_item(objectNamePattern="a*", objectType="secret", maxMatches="0"), "maxMatches"),
        (yaml_item(objectName="a", objectType="secret", maxMatches="3"), "only to a selecting"),
        (
            yaml_item(objectNamePattern="a*", objectType="secret", objectVersion="abc"),
            "always reads the latest",
        ),
        (yaml_item(objectName="a", objectType="cert", certParts="key"), "certParts applies"),
        (yaml_item(objectName="a", objectType="secret", certParts="pem"), "unknown part"),
        (yaml_item(objectName="a", objectType="secret", certParts="key,key"), "given twice"),
        (yaml_item(objectName="a", objectType="secret", certParts="key:999"), "octal"),
        (
            {
                **BASE,
                "keyvaultobjectnames": "a",
                "keyvaultobjecttypes": "secret",
                "keyvaultobjectvaults": "a;b",
            },
            "has 2 entries",
        ),
        (
            {
                **BASE,
                "keyvaultobjectnames": "a",
                "keyvaultobjecttypes": "secret",
                "keyvaultobjecttags": "env=prod",
            },
            "the name must be a glob",
        ),
        (
            {
                **BASE,
                "keyvaultobjectnames": "*",
                "keyvaultobjecttypes": "secret",
                "keyvaultobjecttags": "env",
            },
            "is not key=value",
        ),
        (
            {
                **BASE,
                "keyvaultobjectnames": "a",
                "keyvaultobjecttypes": "secret",
                "keyvaultobjectoptional": "maybe",
            },
            "must be true, false or empty",
        ),
        (
            {
                **BASE,
                "keyvaultobjectnames": "a",
                "keyvaultobjecttypes": "secret",
                "cloudEnvFileName": "/x.json",
            },
            "applies only to cloudName AzureStackCloud",
        ),
        (
            {
                **BASE,
                "keyvaultobjectnames": "a",
                "keyvaultobjecttypes": "secret",
                "cloudName": "AzureStackCloud",
                "cloudEnvFileName": "rel.json",
            },
            "absolute, normalised",
        ),
    ],
)
def test_bad_new_options_are_refused_naming_the_field(attrs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_volume(attrs)


def test_selection_never_selects_a_listed_name_that_is_not_a_key_vault_name() -> None:
    from driver.keyvault.types.base import Listed
    from driver.keyvault.types.selection import select
    from driver.model import ObjectSpec, ObjectType

    entry = ObjectSpec(name="", type=ObjectType.SECRET, select=Selector(pattern="*"))
    listing = [
        Listed("../etc", True, {}),
        Listed("a/b", True, {}),
        Listed("ok-1", True, {}),
        Listed("off", False, {}),
    ]
    assert select(entry, listing, "v") == ["ok-1"]


def test_vault_budget_queues_requests_past_its_limit() -> None:
    from driver.keyvault.fetch import VaultGate

    now = [0.0]
    gate = VaultGate(lambda: now[0], limit=2, window=1.0)
    assert [gate.reserve("v"), gate.reserve("v")] == [0.0, 0.0]
    assert gate.reserve("v") == pytest.approx(0.5)  # booked: the next caller queues behind it
    assert gate.reserve("v") == pytest.approx(1.0)
    assert gate.reserve("other") == 0.0  # per vault
    now[0] = 5.0
    assert gate.reserve("v") == 0.0
    assert VaultGate(lambda: 0.0, limit=0).reserve("v") == 0.0  # 0: no limit
