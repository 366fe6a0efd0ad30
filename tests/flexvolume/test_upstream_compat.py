"""Pod specs written for the upstream `azure/kv` driver, mounted through the real shim against a
running node plugin: what upstream resolved silently still mounts, with a warning in the log."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from devstack.harness import world
from devstack.harness.attributes import flex_options, go_json
from devstack.harness.daemon import DaemonProcess
from devstack.harness.node import flex_target
from devstack.harness.shim import ShimResult, run_shim


@pytest.fixture
def daemon(shared_daemon: DaemonProcess) -> DaemonProcess:
    return shared_daemon


def mount(daemon: DaemonProcess, names: list[str], types: list[str], **extra: str | None) -> Path:
    target = flex_target(daemon.root, str(uuid.uuid4()), "test", create=True)
    options = flex_options(
        daemon.devstack.nmi_port, names, types=types, uid=target.parts[-4], extra=extra
    )
    result = shim(daemon, "mount", str(target), go_json(options))
    assert result.status == "Success", result.message
    return target


def shim(daemon: DaemonProcess, *args: str) -> ShimResult:
    return run_shim(list(args), socket=daemon.flex_socket, log=daemon.root / "flex.log")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- item 14: precedence instead of refusal ----------------------------------------------------


def test_pod_identity_with_a_leftover_secret_ref_mounts_as_the_pod_and_warns(
    daemon: DaemonProcess,
) -> None:
    # A wrong secret: had the service principal been used, Entra ID would have refused it.
    target = mount(
        daemon,
        [world.SECRET],
        ["secret"],
        **{
            "kubernetes.io/secret/clientid": b64(daemon.devstack.client_id(world.SP_IDENTITY)),
            "kubernetes.io/secret/clientsecret": b64("leftover-wrong-secret"),
        },
    )
    assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
    log = daemon.log()
    assert "clientid/clientsecret in the volume's secret (service principal) ignored" in log
    assert "usepodidentity" in log and "takes precedence" in log
    assert "leftover-wrong-secret" not in log
    assert shim(daemon, "unmount", str(target)).status == "Success"


def test_pod_identity_with_vm_managed_identity_uses_the_pod_identity_and_warns(
    daemon: DaemonProcess,
) -> None:
    target = mount(
        daemon,
        [world.SECRET],
        ["secret"],
        usevmmanagedidentity="true",
        vmmanagedidentityclientid=daemon.devstack.client_id(world.VM_USER_IDENTITY),
    )
    assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
    assert 'usevmmanagedidentity: "true" ignored: usepodidentity: "true" takes precedence' in (
        daemon.log()
    )
    assert shim(daemon, "unmount", str(target)).status == "Success"


def test_vm_managed_identity_with_a_leftover_secret_ref_uses_the_vm_identity(
    daemon: DaemonProcess,
) -> None:
    target = mount(
        daemon,
        [world.SECRET],
        ["secret"],
        usepodidentity=None,
        usevmmanagedidentity="true",
        vmmanagedidentityclientid=daemon.devstack.client_id(world.VM_USER_IDENTITY),
        **{"kubernetes.io/secret/clientsecret": b64("leftover-wrong-secret")},
    )
    assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
    assert 'ignored: usevmmanagedidentity: "true" takes precedence' in daemon.log()
    assert shim(daemon, "unmount", str(target)).status == "Success"
