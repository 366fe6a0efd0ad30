"""The pod's fsGroup owns its files, through both front doors, and still owns them after a
rotation swapped new files in."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from devstack.client import Devstack
from devstack.harness.csi_requests import publish_request
from driver.csi.proto import csi_pb2
from tests.fixtures.daemon import StartDaemon
from tests.flexvolume.e2e_support import flex_mount
from tests.rotation.test_daemon_rotation import POLL, content, wait_for

CSI_GROUP, FLEX_GROUP = 4242, 4343


def groups(target: Path) -> set[int]:
    """The group of every file and directory readers can reach, through the ..data link."""
    root = target / "..data"
    found = {os.stat(root).st_gid}
    for dirpath, dirs, files in os.walk(root):
        found |= {os.stat(os.path.join(dirpath, n)).st_gid for n in dirs + files}
    return found


def test_fs_group_owns_the_files_after_publish_and_after_rotation(
    start_daemon: StartDaemon, devstack: Devstack
) -> None:
    daemon = start_daemon("--rotation-poll-interval", POLL)
    caps = daemon.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest(), timeout=5)
    rpc = csi_pb2.NodeServiceCapability.RPC
    assert rpc.VOLUME_MOUNT_GROUP in {c.rpc.type for c in caps.capabilities}

    name = f"fsg-{uuid.uuid4().hex[:8]}"
    devstack.set_secret("testkv", name, "v1")
    attrs = {
        "keyvaultobjectnames": f"{name};secret1",
        "keyvaultobjecttypes": "secret;secret",
        "keyvaultobjectaliases": f"{name};sub/dir/secret1",
    }
    csi_target = daemon.target("fsg-pod")
    request = publish_request("fsg", csi_target, daemon.pod_attributes(**attrs))
    request.volume_capability.mount.volume_mount_group = str(CSI_GROUP)
    daemon.node.NodePublishVolume(request, timeout=30)
    flex_target = flex_mount(
        daemon, {**attrs, "kubernetes.io/mounterArgs.FsGroup": str(FLEX_GROUP)}
    )

    for target, group in ((csi_target, CSI_GROUP), (flex_target, FLEX_GROUP)):
        assert groups(target) == {group}
        mode = stat.S_IMODE(os.stat(target / name).st_mode)
        assert mode & stat.S_IRGRP  # 0644: readable by the group

    devstack.set_secret("testkv", name, "v2")
    for target, group in ((csi_target, CSI_GROUP), (flex_target, FLEX_GROUP)):
        assert wait_for(lambda t=target: content(t / name) == b"v2"), daemon.log()
        assert groups(target) == {group}  # the swapped-in payload too
