"""tmpfs spends pages, not bytes: a volume of many small files that could not be swapped by
rotation is refused at publish, before a single Key Vault request; one that fits rotates."""

from __future__ import annotations

import uuid

import grpc
import pytest

from devstack.client import Devstack
from devstack.harness.csi_requests import publish_request, status_of
from tests.fixtures.daemon import StartDaemon
from tests.rotation.test_daemon_rotation import content, wait_for

SIZE = "64k"  # 16 pages: a payload may take 8, its directory included


def many(name: str, count: int) -> dict[str, str]:
    """`count` small files: the same secret under different aliases."""
    return {
        "keyvaultobjectnames": ";".join([name] * count),
        "keyvaultobjecttypes": ";".join(["secret"] * count),
        "keyvaultobjectaliases": ";".join(f"f{i}" for i in range(count)),
    }


@pytest.fixture
def tmpfs_only(mount_mode: str) -> None:
    if mount_mode != "tmpfs":
        pytest.skip("page accounting belongs to tmpfs mounts")


@pytest.mark.usefixtures("tmpfs_only")
def test_small_files_that_could_not_rotate_are_refused_before_fetching(
    start_daemon: StartDaemon, devstack: Devstack
) -> None:
    daemon = start_daemon("--tmpfs-size", SIZE, "--rotation-poll-interval", "1s")
    name = f"pages-{uuid.uuid4().hex[:8]}"
    devstack.set_secret("testkv", name, "v1")  # 2 bytes a file: 16 of them are 32 bytes

    devstack.reset_counters()
    target = daemon.target("too-many")
    code, details = status_of(
        daemon.node.NodePublishVolume,
        publish_request("too-many", target, daemon.pod_attributes(**many(name, 8))),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "pages" in details and "--tmpfs-size" in details
    assert devstack.count(vault="testkv") == 0  # nothing fetched
    assert not target.exists() or not any(target.iterdir())

    # Seven files and the payload directory: exactly half the pages. It publishes, and a new
    # version swaps in (the old and new payloads side by side fill the tmpfs, and fit).
    fits = daemon.target("fits")
    daemon.publish("fits", fits, daemon.pod_attributes(**many(name, 7)))
    devstack.set_secret("testkv", name, "v2")
    assert wait_for(lambda: all(content(fits / f"f{i}") == b"v2" for i in range(7))), daemon.log()
    assert "No space left" not in daemon.log()
