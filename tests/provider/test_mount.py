"""The provider front door's request decoding and provider-azure conventions, without a daemon."""

from __future__ import annotations

import logging

import pytest

from azcommon.errors import InvalidArgument
from driver.keyvault.objects import RenderedFile
from driver.model import IdentityMode, IdentitySpec, ObjectSpec, ObjectType, VolumeSpec
from driver.provider.mount import ObjectVersion, decode, object_versions, provider_azure_spec
from driver.resolve import ResolvedVolume


def spec(*objects: ObjectSpec) -> VolumeSpec:
    return VolumeSpec("testkv", "t", IdentitySpec(IdentityMode.POD_IDENTITY), objects)


def test_decode_takes_what_go_marshals() -> None:
    got = decode('{"a":"1","b\\u003c":"x\\u0026y"}', "null", "/t", "420")
    assert dict(got.attributes) == {"a": "1", "b<": "x&y"}
    assert dict(got.secrets) == {}
    assert got.permission == 0o644
    assert decode("{}", "", "", "").permission is None
    # os.FileMode type bits (here ModeDir) are no permission bits.
    assert decode("{}", "{}", "", str((1 << 31) | 0o750)).permission == 0o750


@pytest.mark.parametrize(
    ("attributes", "secrets", "permission", "says"),
    [
        ('{"token": "abc', "{}", "420", "attributes is not valid JSON"),
        ('["a"]', "{}", "420", "attributes must be a JSON object of strings"),
        ('{"a": 1}', "{}", "420", "attributes must be a JSON object of strings"),
        ("{}", '{"clientsecret": "s3cr3t"', "420", "secrets is not valid JSON"),
        ("{}", "{}", "0644o", "permission"),
        ("{}", "{}", "-1", "negative"),
    ],
)
def test_decode_refuses_malformed_input_without_quoting_it(
    attributes: str, secrets: str, permission: str, says: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        decode(attributes, secrets, "/t", permission)
    assert says in str(error.value)
    assert "abc" not in str(error.value) and "s3cr3t" not in str(error.value)


def test_provider_azure_conventions() -> None:
    explicit = ObjectSpec("a", ObjectType.SECRET, mode=0o400)
    default = ObjectSpec("b", ObjectType.SECRET)
    one = ObjectSpec("c", ObjectType.SECRET, version_history=1)
    two = ObjectSpec("d", ObjectType.SECRET, version_history=2)
    adapted = provider_azure_spec(spec(explicit, default, one, two), 0o600).objects
    assert [o.mode for o in adapted] == [0o400, 0o600, 0o600, 0o600]
    assert [o.version_history for o in adapted] == [0, 0, 0, 2]
    assert provider_azure_spec(spec(default), None).objects == (default,)


def test_object_ids_are_provider_azures() -> None:
    objects = (
        ObjectSpec("s", ObjectType.SECRET, alias="dir/s.txt"),
        ObjectSpec("k", ObjectType.KEY),
        ObjectSpec("h", ObjectType.CERT, version_history=3),
    )
    resolved = ResolvedVolume(
        spec(*objects),
        "id",
        (RenderedFile("dir/s.txt", 0o644, b""),),
        {"dir/s.txt": ["v1"], "k": ["v2"], "h": ["n0", "n1"]},
    )
    assert object_versions(spec(*objects), resolved) == (
        ObjectVersion("secret/s", "v1"),
        ObjectVersion("key/k", "v2"),
        ObjectVersion("cert/h/0", "n0"),
        ObjectVersion("cert/h/1", "n1"),
    )


def test_an_answer_too_large_for_the_driver_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from driver.provider import server

    with caplog.at_level(logging.WARNING, logger=server.__name__):
        server._warn_if_large(1000, "/t")
        server._warn_if_large(server.SECRET_LIMIT + 1, "/t")
        server._warn_if_large(server.DRIVER_RECEIVE_LIMIT + 1, "/t")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "Kubernetes Secret" in messages[0]
    assert "--max-call-recv-msg-size" in messages[1]


def test_every_entry_is_named_even_without_a_file() -> None:
    """An entry with no versions (a missing optional object) is named with no version, and an
    object of another vault carries the vault: ids stay unique, and never none at all."""
    objects = (
        ObjectSpec("s", ObjectType.SECRET, vault="testkv"),
        ObjectSpec("s", ObjectType.SECRET, vault="otherkv", alias="other/s"),
        ObjectSpec("gone", ObjectType.SECRET),
    )
    resolved = ResolvedVolume(spec(*objects), "id", (), {"s": ["v1"], "other/s": ["v2"]})
    assert object_versions(spec(*objects), resolved) == (
        ObjectVersion("secret/s", "v1"),
        ObjectVersion("otherkv/secret/s", "v2"),
        ObjectVersion("secret/gone", ""),
    )
