"""The operator's VM identity policy: without one every pod may use the node's VM identities
(the azure/kv driver's behaviour); with one, only the namespaces it names, and only the
identities it names for them, through the real CSI socket."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc

from devstack.client import Devstack
from devstack.harness import world
from devstack.harness.attributes import csi_attributes
from devstack.harness.csi_requests import publish_request, status_of
from devstack.harness.daemon import DaemonProcess
from tests.fixtures.daemon import StartDaemon


def vm_volume(daemon: DaemonProcess, namespace: str, client_id: str) -> tuple[grpc.StatusCode, str]:
    volume_id = f"vmpol-{uuid.uuid4().hex[:8]}"
    attributes = csi_attributes(
        daemon.devstack.nmi_port,
        namespace=namespace,
        extra={
            "usePodIdentity": None,
            "useVMManagedIdentity": "true",
            "userAssignedIdentityID": client_id,
        },
    )
    target = daemon.target(volume_id)
    code, details = status_of(
        daemon.node.NodePublishVolume, publish_request(volume_id, target, attributes)
    )
    if code == grpc.StatusCode.OK:
        assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
        daemon.unpublish(volume_id, target)
    else:
        assert not target.exists() or not any(target.iterdir())
    return code, details


def test_vm_identities_are_limited_to_the_namespaces_the_policy_names(
    start_daemon: StartDaemon, devstack: Devstack, tmp_path: Path
) -> None:
    client_id = devstack.client_id(world.VM_USER_IDENTITY)
    policy = tmp_path / "vm-policy.yaml"
    policy.write_text(f"default: [{client_id}]\nkube-system: ['*']\n")
    daemon = start_daemon("--vm-identity-policy", str(policy))

    assert vm_volume(daemon, "default", client_id)[0] == grpc.StatusCode.OK
    assert vm_volume(daemon, "kube-system", client_id)[0] == grpc.StatusCode.OK
    # A namespace the policy does not name, after the identity's credential was cached for an
    # allowed one.
    code, details = vm_volume(daemon, "team-b", client_id)
    assert code == grpc.StatusCode.PERMISSION_DENIED, details
    assert "team-b" in details and "--vm-identity-policy" not in details
    assert "VM identity policy" in details and str(policy) in details
    # An allowed namespace, but not for the system-assigned identity.
    code, details = vm_volume(daemon, "default", "")
    assert code == grpc.StatusCode.PERMISSION_DENIED and "system-assigned" in details


def test_without_a_policy_every_namespace_may_use_the_vm_identity(
    shared_daemon: DaemonProcess, devstack: Devstack
) -> None:
    client_id = devstack.client_id(world.VM_USER_IDENTITY)
    assert vm_volume(shared_daemon, "team-b", client_id)[0] == grpc.StatusCode.OK


def test_a_broken_policy_file_stops_the_daemon_at_start(tmp_path: Path) -> None:
    policy = tmp_path / "vm-policy.yaml"
    policy.write_text(json.dumps({"team-a": "not-a-list"}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "--endpoint",
            f"unix://{tmp_path}/csi.sock",
            "--state-dir",
            str(tmp_path / "state"),
            "--mount-mode",
            "dir",
            "--vm-identity-policy",
            str(policy),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=world.REPO,
    )
    assert proc.returncode != 0
    assert "team-a" in proc.stderr and "must list client ids" in proc.stderr
