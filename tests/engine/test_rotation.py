"""Rotation cycles through the real engine against the devstack: what a pod sees change."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from driver.mounts import mount_points


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_new_version_rotates_only_that_file(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    name, pinned = unique("rot"), unique("pin")
    devstack.set_secret("testkv", name, "one")
    pinned_version = devstack.set_secret("testkv", pinned, "pinned-one")
    req = pod_request(
        {
            "keyvaultobjectnames": f"{name};{pinned};secret1",
            "keyvaultobjecttypes": "secret;secret;secret",
            "keyvaultobjectversions": f";{pinned_version};",
        }
    )
    core.engine.publish(req)
    t = req.target_path
    devstack.set_secret("testkv", pinned, "pinned-two")  # pinned: must not move
    devstack.set_secret("testkv", name, "two")
    devstack.reset_counters()
    report = core.rotator.cycle()
    assert report.rotated == [req.volume_id]
    assert (t / name).read_bytes() == b"two"
    assert (t / pinned).read_bytes() == b"pinned-one"
    assert (t / "secret1").read_bytes() == b"testkv-secret1-value"
    # Two unpinned objects checked, the pinned one never asked for.
    assert report.checks == 2
    assert devstack.count(vault="testkv", operation="secret.get") == 2
    # Nothing changed since: the next cycle swaps nothing.
    assert core.rotator.cycle().rotated == []


def test_volumes_sharing_an_identity_share_one_check(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    name = unique("shared")
    devstack.set_secret("testkv", name, "a")
    attrs = {"keyvaultobjectnames": name, "keyvaultobjecttypes": "secret"}
    flex = pod_request({**attrs, "csi.storage.k8s.io/pod.name": "nginx-flex-kv-podid"})
    csi = pod_request({**attrs, "csi.storage.k8s.io/pod.name": "nginx-csi-kv-podid"})
    core.engine.publish(flex)
    core.engine.publish(csi)
    devstack.set_secret("testkv", name, "b")
    devstack.reset_counters()
    report = core.rotator.cycle()
    # Both pods are assigned the same identity by MIC: one request serves both.
    assert report.checks == 1 and report.saved == 1
    assert devstack.count(vault="testkv", operation="secret.get") == 1
    assert sorted(report.rotated) == sorted([flex.volume_id, csi.volume_id])
    assert (flex.target_path / name).read_bytes() == b"b"
    assert (csi.target_path / name).read_bytes() == b"b"


def test_failed_checks_keep_old_files_and_are_counted(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core()
    name = unique("gone")
    version = devstack.set_secret("testkv", name, "keep-me")
    req = pod_request({"keyvaultobjectnames": name, "keyvaultobjecttypes": "secret"})
    core.engine.publish(req)

    devstack.set_secret_enabled("testkv", name, version, False)  # latest is now disabled
    report = core.rotator.cycle()
    assert report.failures == {req.volume_id: "check:PERMISSION_DENIED"}
    assert (req.target_path / name).read_bytes() == b"keep-me"

    devstack.delete_secret("testkv", name)
    report = core.rotator.cycle()
    assert report.failures == {req.volume_id: "check:NOT_FOUND"}
    assert (req.target_path / name).read_bytes() == b"keep-me"
    metrics = core.metrics.registry.get_sample_value
    assert metrics("kv_driver_rotation_failures_total", {"reason": "check:NOT_FOUND"}) == 1


def test_throttled_vault_keeps_old_files(make_core, pod_request, devstack: Any) -> None:
    core = make_core(request_timeout=0.5)
    name = unique("thr")
    devstack.set_secret("testkv", name, "old")
    req = pod_request({"keyvaultobjectnames": name, "keyvaultobjecttypes": "secret"})
    core.engine.publish(req)
    devstack.set_secret("testkv", name, "new")
    devstack.fault(vault="testkv", endpoint="keyvault", rate_429=1.0, retry_after=30)
    try:
        report = core.rotator.cycle()
        assert report.failures == {req.volume_id: "check:RESOURCE_EXHAUSTED"}
        assert (req.target_path / name).read_bytes() == b"old"
        # The vault said "retry in 30 s": the next cycle does not even ask.
        devstack.reset_counters()
        report = core.rotator.cycle()
        assert report.failures == {req.volume_id: "check:RESOURCE_EXHAUSTED"}
        assert devstack.count(vault="testkv") == 0
    finally:
        devstack.clear_faults()


def test_volume_whose_pod_is_gone_is_forgotten(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request()
    core.engine.publish(req)
    core.placement.release(req.target_path)  # kubelet tore the pod down
    report = core.rotator.cycle()
    assert report.removed == [req.volume_id]
    assert core.ledger.at(req.target_path) is None


def test_lost_files_are_rebuilt_while_the_pod_exists(
    make_core, pod_request, mount_mode: str
) -> None:
    core = make_core()
    req = pod_request()
    core.engine.publish(req)
    t = req.target_path
    core.placement.release(t)
    t.mkdir()  # the pod's directory is still there, its files are not
    report = core.rotator.cycle()
    assert report.rotated == [req.volume_id]
    assert (t / "secret1").read_bytes() == b"testkv-secret1-value"
    if mount_mode == "tmpfs":
        assert mount_points()[str(t)] == "tmpfs"


def test_history_volumes_roll_forward(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    name = unique("hist")
    devstack.set_secret("testkv", name, "h1")
    devstack.set_secret("testkv", name, "h2")
    objects = f"array:\n  - |\n    objectName: {name}\n    objectType: secret\n    objectVersionHistory: 2\n"
    req = pod_request(
        {"keyvaultobjectnames": None, "keyvaultobjecttypes": None, "objects": objects}
    )
    core.engine.publish(req)
    devstack.set_secret("testkv", name, "h3")
    assert core.rotator.cycle().rotated == [req.volume_id]
    assert (req.target_path / name / "0").read_bytes() == b"h3"
    assert (req.target_path / name / "1").read_bytes() == b"h2"


def test_restart_reloads_state_and_keeps_rotating(
    make_core, pod_request, devstack: Any, tmp_path: Path
) -> None:
    first = make_core()
    name = unique("restart")
    devstack.set_secret("testkv", name, "before")
    req = pod_request({"keyvaultobjectnames": name, "keyvaultobjecttypes": "secret"})
    first.engine.publish(req)
    # A crash mid-swap leaves a half-written payload directory behind.
    (req.target_path / "..2026_01_01_00_00_00.000000001").mkdir()
    first.close()

    second = make_core()  # same state dir: restore() runs in the fixture
    assert second.ledger.at(req.target_path) is not None
    assert not (req.target_path / "..2026_01_01_00_00_00.000000001").exists()
    devstack.set_secret("testkv", name, "after")
    assert second.rotator.cycle().rotated == [req.volume_id]
    assert (req.target_path / name).read_bytes() == b"after"


def test_corrupt_record_is_skipped_not_fatal(make_core, pod_request, tmp_path: Path) -> None:
    first = make_core()
    req = pod_request()
    first.engine.publish(req)
    bad = first.ledger.records_dir / "broken.json"
    bad.write_text("{not json")
    second = make_core()
    problems = second.upkeep.restore()
    assert any("broken.json" in p for p in problems)
    assert second.ledger.at(req.target_path) is not None


def test_rotation_never_acts_on_a_record_replaced_or_removed_meanwhile(
    make_core, pod_request, devstack: Any
) -> None:
    from azcommon.errors import Aborted

    core = make_core()
    name = unique("stale")
    devstack.set_secret("testkv", name, "one")
    req = pod_request({"keyvaultobjectnames": name, "keyvaultobjecttypes": "secret"})
    core.engine.publish(req)
    seen_by_cycle = core.ledger.at(req.target_path)
    access, _ = core.resolver.access_recorded(seen_by_cycle, core.ledger.auth_of(seen_by_cycle))
    latest = core.resolver.latest(access, seen_by_cycle.spec.objects[0])
    # kubelet republishes with one more object while the cycle was fetching...
    grown = pod_request(
        {"keyvaultobjectnames": f"{name};secret1", "keyvaultobjecttypes": "secret;secret"},
        volume_id=req.volume_id,
        target_path=req.target_path,
    )
    core.engine.publish(grown)
    with pytest.raises(Aborted):
        core.upkeep.apply_rotation(seen_by_cycle, {name: latest})
    assert (req.target_path / "secret1").read_bytes() == b"testkv-secret1-value"
    # ...or unpublishes it: the cycle must not mount it again.
    current = core.ledger.at(req.target_path)
    core.engine.unpublish(req.volume_id, req.target_path)
    with pytest.raises(Aborted):
        core.upkeep.recover(current)
    assert not req.target_path.exists()


def test_pinned_only_volumes_are_not_refetched_on_republish(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core(rotation_poll_interval=60.0)
    name = unique("pinonly")
    version = devstack.set_secret("testkv", name, "fixed")
    req = pod_request(
        {
            "keyvaultobjectnames": name,
            "keyvaultobjecttypes": "secret",
            "keyvaultobjectversions": version,
        }
    )
    core.engine.publish(req)
    core.ledger.at(req.target_path).last_check = 0.0  # a long time ago
    devstack.reset_counters()
    assert core.rotator.cycle().checks == 0
    assert not core.engine.publish(req).fetched  # the cycle vouched for it
    assert devstack.count(vault="testkv") == 0
