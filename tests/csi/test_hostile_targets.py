"""What a careless or hostile caller can point the driver at: only what the driver created is
ever unmounted or deleted, and bad names are INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import grpc
import pytest

from devstack.client import Devstack
from devstack.harness import world
from devstack.harness.csi_requests import publish_request, status_of, unpublish_request
from devstack.harness.daemon import DaemonProcess
from devstack.harness.node import is_mounted
from driver.mounts import TmpfsMounter

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _vid() -> str:
    return f"hostile-{uuid.uuid4().hex[:8]}"


def _publish(daemon: DaemonProcess, volume_id: str, target: Path) -> tuple[grpc.StatusCode, str]:
    request = publish_request(volume_id, target, daemon.pod_attributes())
    return status_of(daemon.node.NodePublishVolume, request)


def _unpublish(daemon: DaemonProcess, volume_id: str, target: Path) -> tuple[grpc.StatusCode, str]:
    return status_of(daemon.node.NodeUnpublishVolume, unpublish_request(volume_id, target))


def test_unpublish_of_a_never_published_directory_keeps_its_files(
    shared_daemon: DaemonProcess,
) -> None:
    target = shared_daemon.target(_vid())
    target.mkdir()
    (target / "precious.txt").write_text("mine")
    assert _unpublish(shared_daemon, _vid(), target)[0] == grpc.StatusCode.OK
    assert (target / "precious.txt").read_text() == "mine"


def test_unpublish_of_an_unknown_empty_directory_removes_it(shared_daemon: DaemonProcess) -> None:
    target = shared_daemon.target(_vid())
    target.mkdir()
    assert _unpublish(shared_daemon, _vid(), target)[0] == grpc.StatusCode.OK
    assert not target.exists()


def test_a_foreign_tmpfs_is_neither_unmounted_nor_mounted_over(
    shared_daemon: DaemonProcess, mount_mode: str
) -> None:
    if mount_mode != "tmpfs":
        pytest.skip("needs real mounts (root in a private mount namespace)")
    target = shared_daemon.target(_vid())
    foreign = TmpfsMounter("1m")
    foreign.prepare(target)
    try:
        (target / "theirs").write_text("data")
        code, details = _publish(shared_daemon, _vid(), target)
        assert code == INVALID and "target_path" in details and "mounted" in details
        assert _unpublish(shared_daemon, _vid(), target)[0] == grpc.StatusCode.OK
        assert is_mounted(target) and (target / "theirs").read_text() == "data"
    finally:
        foreign.release(target)


def test_publish_onto_a_non_empty_directory_is_refused_and_leaves_it_alone(
    shared_daemon: DaemonProcess,
) -> None:
    target = shared_daemon.target(_vid())
    target.mkdir()
    (target / "app.conf").write_text("keep me")
    volume_id = _vid()
    code, details = _publish(shared_daemon, volume_id, target)
    assert code == INVALID
    assert "target_path" in details and "not empty" in details
    assert _unpublish(shared_daemon, volume_id, target)[0] == grpc.StatusCode.OK
    assert (target / "app.conf").read_text() == "keep me"
    assert not is_mounted(target)


def test_publish_onto_a_symlink_is_refused_and_nothing_is_mounted_at_its_destination(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = shared_daemon.target(_vid())
    target.symlink_to(elsewhere)
    volume_id = _vid()
    code, details = _publish(shared_daemon, volume_id, target)
    assert code == INVALID and "symbolic link" in details
    assert not is_mounted(elsewhere) and list(elsewhere.iterdir()) == []
    assert _unpublish(shared_daemon, volume_id, target)[0] == grpc.StatusCode.OK
    assert target.is_symlink() and elsewhere.is_dir()


def test_publish_onto_a_file_is_refused(shared_daemon: DaemonProcess) -> None:
    target = shared_daemon.target(_vid())
    target.write_text("a file")
    code, details = _publish(shared_daemon, _vid(), target)
    assert code == INVALID and "not a directory" in details
    assert target.read_text() == "a file"


@pytest.mark.parametrize(
    ("target", "field", "problem"),
    [
        ("relative/path/mount", "target_path", "not an absolute path"),
        ("/var/lib/kubelet/pods/../../../etc/mount", "target_path", "not normalised"),
        ("/var/lib/kubelet/pods/x\0y/mount", "target_path", "NUL"),
        ("/var/" + "a" * 5000, "target_path", "bytes long"),
        ("/var/lib/" + "b" * 300 + "/mount", "target_path", "component"),
    ],
)
def test_bad_target_paths_are_invalid_argument_naming_the_field(
    shared_daemon: DaemonProcess, target: str, field: str, problem: str
) -> None:
    request = publish_request(_vid(), Path("/x"), shared_daemon.pod_attributes())
    request.target_path = target
    code, details = status_of(shared_daemon.node.NodePublishVolume, request)
    assert code == INVALID, details
    assert field in details and problem in details
    request_off = unpublish_request("some-volume", Path("/x"))
    request_off.target_path = target
    code, details = status_of(shared_daemon.node.NodeUnpublishVolume, request_off)
    assert code == INVALID and field in details


def test_an_overlong_volume_id_is_invalid_argument(shared_daemon: DaemonProcess) -> None:
    code, details = _publish(shared_daemon, "v" * 5000, shared_daemon.target(_vid()))
    assert code == INVALID and "volume_id" in details


def test_one_volume_id_at_two_targets_keeps_both(shared_daemon: DaemonProcess) -> None:
    volume_id = _vid()
    first, second = shared_daemon.target(_vid()), shared_daemon.target(_vid())
    assert _publish(shared_daemon, volume_id, first)[0] == grpc.StatusCode.OK
    assert _publish(shared_daemon, volume_id, second)[0] == grpc.StatusCode.OK
    assert _unpublish(shared_daemon, volume_id, first)[0] == grpc.StatusCode.OK
    assert not first.exists()
    assert (second / world.SECRET).read_text() == world.SECRET_VALUE
    records = [p.read_text() for p in (shared_daemon.state_dir / "volumes").glob("*.json")]
    assert sum(str(second) in r for r in records) == 1
    assert _unpublish(shared_daemon, volume_id, second)[0] == grpc.StatusCode.OK
    assert not second.exists()


def test_ids_that_differ_only_in_unsafe_characters_keep_their_own_records(
    shared_daemon: DaemonProcess,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    slash, underscore = f"vol/{suffix}", f"vol_{suffix}"
    t1, t2 = shared_daemon.target(_vid()), shared_daemon.target(_vid())
    assert _publish(shared_daemon, slash, t1)[0] == grpc.StatusCode.OK
    assert _publish(shared_daemon, underscore, t2)[0] == grpc.StatusCode.OK
    assert _unpublish(shared_daemon, slash, t1)[0] == grpc.StatusCode.OK
    mine = [
        p for p in (shared_daemon.state_dir / "volumes").glob("*.json") if suffix in p.read_text()
    ]
    assert len(mine) == 1 and f'"{underscore}"' in mine[0].read_text()
    assert _unpublish(shared_daemon, underscore, t2)[0] == grpc.StatusCode.OK


def test_a_publish_onto_another_volumes_target_is_refused(shared_daemon: DaemonProcess) -> None:
    target = shared_daemon.target(_vid())
    owner = _vid()
    assert _publish(shared_daemon, owner, target)[0] == grpc.StatusCode.OK
    code, details = _publish(shared_daemon, _vid(), target)
    assert code == INVALID and owner in details
    assert (target / world.SECRET).read_text() == world.SECRET_VALUE
    assert _unpublish(shared_daemon, owner, target)[0] == grpc.StatusCode.OK


def test_a_republish_that_cannot_refresh_keeps_good_files_and_succeeds(
    start_daemon, devstack: Devstack
) -> None:
    """Access revoked after the mount: kubelet's republish must not get a final error (some
    kubelets then delete the mount directory); the files stay and the failure is counted."""
    daemon = start_daemon("--rotation-poll-interval", "0")  # every republish fetches
    name = f"kept-{uuid.uuid4().hex[:6]}"
    devstack.set_secret(world.VAULT, name, "v1")
    attributes = daemon.pod_attributes(keyvaultobjectnames=name, keyvaultobjecttypes="secret")
    target = daemon.target(_vid())
    volume_id = _vid()
    daemon.publish(volume_id, target, attributes)
    full = ["get", "list"]
    devstack.set_policy(world.VAULT, "pod-identity", secrets=[], keys=full, certificates=full)
    try:
        request = publish_request(volume_id, target, attributes)
        assert status_of(daemon.node.NodePublishVolume, request)[0] == grpc.StatusCode.OK
    finally:
        devstack.set_policy(world.VAULT, "pod-identity", secrets=full, keys=full, certificates=full)
    assert (target / name).read_text() == "v1"
    assert 'kv_driver_republish_kept_total{code="PERMISSION_DENIED"} 1.0' in daemon.metrics()
    # A changed request is not the volume on disk: its failure is reported.
    other = dict(attributes, keyvaultobjectnames=f"{name};missing-{name}")
    other["keyvaultobjecttypes"] = "secret;secret"
    code, _ = status_of(daemon.node.NodePublishVolume, publish_request(volume_id, target, other))
    assert code == grpc.StatusCode.NOT_FOUND
    assert (target / name).read_text() == "v1"


def test_a_republish_with_a_wrong_client_secret_fails_and_rotation_keeps_the_right_one(
    start_daemon, devstack: Devstack
) -> None:
    daemon = start_daemon("--rotation-poll-interval", "1h")
    target = daemon.target(_vid())
    volume_id = _vid()
    attributes = {
        "keyvaultName": world.VAULT,
        "tenantId": world.TENANT,
        "keyvaultobjectnames": world.SECRET,
        "keyvaultobjecttypes": "secret",
    }
    good = {
        "clientid": devstack.client_id(world.SP_IDENTITY),
        "clientsecret": devstack.client_secret(world.SP_IDENTITY),
    }
    daemon.publish(volume_id, target, attributes, secrets=good)
    for attempt in range(3):
        wrong = dict(good, clientsecret=f"wrong-{attempt}")
        code, details = status_of(
            daemon.node.NodePublishVolume,
            publish_request(volume_id, target, attributes, secrets=wrong),
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
        assert "wrong-" not in details
    assert (target / world.SECRET).read_text() == world.SECRET_VALUE
    # The right secret is still the one on record: a republish with it needs no fetch at all.
    devstack.reset_counters()
    daemon.publish(volume_id, target, attributes, secrets=good)
    assert devstack.count(vault=world.VAULT) == 0
    assert "wrong-" not in daemon.log()
    daemon.unpublish(volume_id, target)


def test_records_survive_a_restart_under_their_target(start_daemon) -> None:
    daemon = start_daemon()
    target = daemon.target(_vid())
    volume_id = _vid()
    daemon.publish(volume_id, target, daemon.pod_attributes())
    daemon.stop()
    daemon.start()
    assert (target / world.SECRET).read_text() == world.SECRET_VALUE
    daemon.unpublish(volume_id, target)
    assert not target.exists()
    assert os.listdir(daemon.state_dir / "volumes") == []
