"""Names that cannot be file names are INVALID_ARGUMENT naming the field, and nothing they
touched stays behind inside a live volume."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from devstack.harness import world
from devstack.harness.attributes import csi_attributes
from devstack.harness.csi_requests import publish_request, status_of
from devstack.harness.daemon import DaemonProcess
from driver.files import DATA_LINK, AtomicWriter
from driver.keyvault.objects import RenderedFile


def objects_with_alias(alias_yaml: str) -> str:
    # The item is itself YAML (provider style), so a double-quoted alias decodes its escapes.
    return (
        "array:\n"
        "  - |\n"
        f"    objectName: {world.SECRET}\n"
        "    objectType: secret\n"
        f"    objectAlias: {alias_yaml}\n"
    )


def entries(target: Path) -> set[str]:
    return {p.name for p in target.iterdir()}


def test_an_alias_decoding_to_a_lone_surrogate_is_invalid_and_leaves_the_live_volume_alone(
    shared_daemon: DaemonProcess,
) -> None:
    volume_id = f"surrogate-{uuid.uuid4().hex[:8]}"
    target = shared_daemon.target(volume_id)
    good = csi_attributes(
        shared_daemon.devstack.nmi_port,
        extra={
            "objects": objects_with_alias('"ok.txt"'),
            "keyvaultobjectnames": None,
            "keyvaultobjecttypes": None,
        },
    )
    shared_daemon.publish(volume_id, target, good)
    before = entries(target)

    bad = {**good, "objects": objects_with_alias('"a\\ud800b"')}
    code, details = status_of(
        shared_daemon.node.NodePublishVolume, publish_request(volume_id, target, bad)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "objectAlias" in details and "surrogate" in details
    assert entries(target) == before  # no partial payload directory
    assert (target / "ok.txt").read_bytes() == world.SECRET_VALUE.encode()
    shared_daemon.unpublish(volume_id, target)


def test_any_failure_while_writing_a_payload_removes_it(tmp_path: Path) -> None:
    writer = AtomicWriter()
    writer.write(tmp_path, [RenderedFile("a", 0o644, b"old")])
    before = entries(tmp_path)
    # Not an OSError: a name the file system layer cannot encode.
    bad = [RenderedFile("b", 0o644, b"new"), RenderedFile("c\ud800", 0o644, b"x")]
    with pytest.raises(UnicodeEncodeError):
        writer.write(tmp_path, bad)
    assert entries(tmp_path) == before
    assert (tmp_path / DATA_LINK / "a").read_bytes() == b"old"
