"""Provider-style (`objects`) volumes written for the secrets-store provider, published over the
daemon's real CSI socket: what the provider tolerated is tolerated here, with a warning."""

from __future__ import annotations

import uuid

from devstack.harness import world
from devstack.harness.attributes import csi_attributes
from devstack.harness.daemon import DaemonProcess


def test_unknown_fields_in_an_objects_item_are_ignored_with_a_warning(
    shared_daemon: DaemonProcess,
) -> None:
    volume_id = f"provider-{uuid.uuid4().hex[:8]}"
    target = shared_daemon.target(volume_id)
    objects = (
        "array:\n"
        "  - |\n"
        f"    objectName: {world.SECRET}\n"
        "    objectType: secret\n"
        "    objectColour: red\n"  # e.g. a field of a newer provider release
    )
    attributes = csi_attributes(
        shared_daemon.devstack.nmi_port,
        extra={"objects": objects, "keyvaultobjectnames": None, "keyvaultobjecttypes": None},
    )
    shared_daemon.publish(volume_id, target, attributes)
    assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
    assert 'unknown field "objectColour" ignored' in shared_daemon.log()
    shared_daemon.unpublish(volume_id, target)
