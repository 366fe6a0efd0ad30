"""Rotation in the running daemon: CSI and FlexVolume volumes follow new versions, survive a
SIGKILL in the middle of a cycle, and never show a pod an empty or mixed volume."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from devstack.client import Devstack
from driver.mounts import make_mounter, mount_points
from tests.fixtures.daemon import StartDaemon
from tests.flexvolume.e2e_support import flex_mount

POLL = "1s"


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def test_csi_and_flexvolume_volumes_both_rotate(
    start_daemon: StartDaemon, devstack: Devstack
) -> None:
    daemon = start_daemon("--rotation-poll-interval", POLL)
    name = f"drot-{uuid.uuid4().hex[:8]}"
    devstack.set_secret("testkv", name, "v1")
    attrs = {"keyvaultobjectnames": f"{name};secret1", "keyvaultobjecttypes": "secret;secret"}
    csi_target = daemon.target("csi-pod")
    daemon.node.NodePublishVolume(
        daemon.publish_request("csi-rot", csi_target, daemon.pod_attributes(**attrs))
    )
    flex_target = flex_mount(daemon, attrs)

    devstack.set_secret("testkv", name, "rotated-Q9x")
    for target in (csi_target, flex_target):
        assert wait_for(lambda t=target: content(t / name) == b"rotated-Q9x"), daemon.log()
        # The other object's file was carried over, not rewritten from Key Vault.
        assert (target / "secret1").read_bytes() == b"testkv-secret1-value"
    assert "rotated volume" in daemon.log() and "rotated-Q9x" not in daemon.log()
    # The counter moves just after the files swap: wait for it rather than race it.
    assert wait_for(lambda: "kv_driver_rotations_total 2.0" in daemon.metrics()), daemon.metrics()


def test_sigkill_mid_cycle_then_restart_keeps_every_volume(
    start_daemon: StartDaemon, devstack: Devstack, tmp_path: Path, mount_mode: str
) -> None:
    root = tmp_path / "node"
    daemon = start_daemon("--rotation-poll-interval", POLL, root=root)
    name = f"kill-{uuid.uuid4().hex[:8]}"
    devstack.set_secret("testkv", name, "before")
    attrs = {"keyvaultobjectnames": name, "keyvaultobjecttypes": "secret"}
    targets = []
    for i in range(3):
        target = daemon.target(f"kill-pod-{i}")
        daemon.node.NodePublishVolume(
            daemon.publish_request(f"kill-{i}", target, daemon.pod_attributes(**attrs))
        )
        targets.append(target)
    targets.append(flex_mount(daemon, attrs))

    # Slow Key Vault down so the next cycle is in flight when the process dies.
    devstack.fault(vault="testkv", endpoint="keyvault", latency_ms=700)
    try:
        devstack.set_secret("testkv", name, "after")
        devstack.reset_counters()
        assert wait_for(lambda: devstack.count(vault="testkv") > 0, timeout=10)
        daemon.kill()
    finally:
        devstack.clear_faults()
    for target in targets:  # never empty, never mixed: old or new, whole
        assert content(target / name) in (b"before", b"after")

    restarted = start_daemon("--rotation-poll-interval", POLL, root=root)
    for target in targets:
        assert wait_for(lambda t=target: content(t / name) == b"after"), restarted.log()
        if mount_mode == "tmpfs":
            assert mount_points()[str(target)] == "tmpfs"
        leftovers = [p.name for p in target.iterdir() if p.name.startswith("..2")]
        assert len(leftovers) == 1  # one payload: crash leftovers were swept
    devstack.set_secret("testkv", name, "again")
    for target in targets:
        assert wait_for(lambda t=target: content(t / name) == b"again"), restarted.log()


def test_volume_of_a_deleted_pod_is_cleaned_up(start_daemon: StartDaemon, mount_mode: str) -> None:
    daemon = start_daemon("--rotation-poll-interval", POLL)
    target = daemon.target("gone-pod")
    daemon.node.NodePublishVolume(daemon.publish_request("gone", target, daemon.pod_attributes()))
    daemon.kill()  # kubelet tore the pod down while the plugin was away
    make_mounter(mount_mode, "1m").release(target)
    restarted = start_daemon("--rotation-poll-interval", POLL, root=daemon.root)
    assert wait_for(
        lambda: "gone" not in {p.stem for p in (restarted.state_dir / "volumes").glob("*.json")}
    )


def test_deleting_a_state_record_stops_managing_the_volume(
    start_daemon: StartDaemon, devstack: Devstack
) -> None:
    daemon = start_daemon("--rotation-poll-interval", POLL)
    name = f"watch-{uuid.uuid4().hex[:8]}"
    devstack.set_secret("testkv", name, "kept")
    target = daemon.target("watched-pod")
    attrs = daemon.pod_attributes(keyvaultobjectnames=name, keyvaultobjecttypes="secret")
    daemon.node.NodePublishVolume(daemon.publish_request("watched", target, attrs))
    (record,) = (daemon.state_dir / "volumes").glob("watched-*.json")
    record.unlink()  # an operator's decision
    assert wait_for(lambda: "forgot volume watched" in daemon.log())
    devstack.set_secret("testkv", name, "not-applied")
    time.sleep(2.5)  # two poll intervals: a managed volume would have rotated by now
    assert content(target / name) == b"kept"
    assert 'kv_driver_volumes_mounted{source="csi"} 0.0' in daemon.metrics()
