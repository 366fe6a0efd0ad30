"""The seed `azure/kv` pods, mounted by exec'ing the shim as kubelet does, through a running
node plugin, against the devstack, into real tmpfs mounts."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from cryptography import x509

from devstack.harness import world
from devstack.harness.attributes import flex_options, go_json
from devstack.harness.daemon import DaemonProcess
from devstack.harness.node import flex_target
from devstack.harness.shim import ShimResult, run_shim
from driver.mounts import mount_points
from tests.fixtures.daemon import StartDaemon


@pytest.fixture
def daemon(shared_daemon: DaemonProcess) -> DaemonProcess:
    """Here `daemon` is the module's shared daemon: each test mounts into a pod directory of its
    own and none stops it (test_daemon_down_fails_fast starts its own)."""
    return shared_daemon


def seed_options(daemon: DaemonProcess, mount_dir: Path, **extra: str | None) -> dict[str, str]:
    """The seed pod's flexVolume options (from the original docs) plus what kubelet adds."""
    return flex_options(
        daemon.devstack.nmi_port,
        [world.SECRET, world.KEY, world.CERT],
        types=["secret", "key", "cert"],
        uid=mount_dir.parts[-4],
        volume="test",
        readwrite="ro",
        extra={
            "keyvaultobjectversions": "",
            "resourcegroup": "rg",
            "subscriptionid": "00000000-0000-0000-0000-000000000000",
            **extra,
        },
    )


def mount_dir(daemon: DaemonProcess) -> Path:
    # kubelet creates the FlexVolume mount dir before `mount`
    return flex_target(daemon.root, str(uuid.uuid4()), "test", create=True)


def shim(daemon: DaemonProcess, *args: str) -> ShimResult:
    return run_shim(list(args), socket=daemon.flex_socket, log=daemon.root / "flex.log")


def assert_empty(path: Path) -> None:
    assert str(path) not in mount_points()
    assert not path.exists() or not any(path.iterdir())


def test_seed_pod_identity_pod_mounts_all_three_objects(
    daemon: DaemonProcess, mount_mode: str
) -> None:
    target = mount_dir(daemon)
    result = shim(daemon, "mount", str(target), go_json(seed_options(daemon, target)))
    assert result.status == "Success", result.message
    assert (target / "secret1").read_bytes() == b"testkv-secret1-value"
    # What the azure/kv driver wrote: the RSA modulus in base64url, the certificate as DER.
    modulus = base64.urlsafe_b64decode((target / "key1").read_bytes() + b"==")
    assert int.from_bytes(modulus, "big").bit_length() == 2048
    x509.load_der_x509_certificate((target / "cert1").read_bytes())
    if mount_mode == "tmpfs":
        assert mount_points()[str(target)] == "tmpfs"
    assert shim(daemon, "unmount", str(target)).status == "Success"
    assert not target.exists()
    assert shim(daemon, "unmount", str(target)).status == "Success"  # idempotent


def test_service_principal_form_with_base64_secret_ref(daemon: DaemonProcess) -> None:
    sp = daemon.devstack.identities["kvcreds"]
    target = mount_dir(daemon)
    options = seed_options(
        daemon,
        target,
        usepodidentity=None,
        keyvaultobjectnames="secret1",
        keyvaultobjecttypes="secret",
        **{
            "kubernetes.io/secret/clientid": base64.b64encode(sp["client_id"].encode()).decode(),
            "kubernetes.io/secret/clientsecret": base64.b64encode(
                sp["client_secret"].encode()
            ).decode(),
        },
    )
    result = shim(daemon, "mount", str(target), go_json(options))
    assert result.status == "Success", result.message
    assert (target / "secret1").read_bytes() == b"testkv-secret1-value"
    assert sp["client_secret"] not in daemon.log()
    assert sp["client_secret"] not in (daemon.root / "flex.log").read_text()


def test_vm_managed_identity_form(daemon: DaemonProcess) -> None:
    target = mount_dir(daemon)
    options = seed_options(
        daemon,
        target,
        usepodidentity=None,
        usevmmanagedidentity="true",
        vmmanagedidentityclientid=daemon.devstack.identities["vm-user"]["client_id"],
        keyvaultobjectnames="secret1",
        keyvaultobjecttypes="secret",
    )
    result = shim(daemon, "mount", str(target), go_json(options))
    assert result.status == "Success", result.message


def test_option_values_with_spaces_split_across_argv_words(daemon: DaemonProcess) -> None:
    target = mount_dir(daemon)
    text = go_json(
        seed_options(
            daemon,
            target,
            keyvaultobjectnames="secret1",
            keyvaultobjecttypes="secret",
            note="a value with spaces",
        )
    )
    words = text.split(" ")  # what a shell-based caller without quoting would pass
    assert len(words) > 1
    result = shim(daemon, "mount", str(target), *words)
    assert result.status == "Success", result.message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"keyvaultobjecttypes": "secret;key"}, "keyvaultobjecttypes"),
        ({"keyvaultobjecttypes": "secret;blob;cert"}, "blob"),
        ({"keyvaultname": "-bad--name"}, "keyvaultname"),
        ({"tenantid": None}, "tenant"),
        ({"nmiport": "99999"}, "nmiport"),
        ({"keyvaultobjectaliases": "a;../b;c"}, ".."),
        # Pod identity with clientID (workload identity, which azure/kv never had): no precedence.
        ({"clientID": "00000000-0000-0000-0000-00000000000a"}, "identity"),
        ({"kubernetes.io/pod.name": None}, "pod"),
    ],
)
def test_bad_options_fail_clearly_with_no_files(
    daemon: DaemonProcess, change: dict[str, str | None], needle: str
) -> None:
    target = mount_dir(daemon)
    options = seed_options(daemon, target)
    for key, value in change.items():
        if value is None:
            options.pop(key, None)
        else:
            options[key] = value
    result = shim(daemon, "mount", str(target), go_json(options))
    assert result.status == "Failure"
    assert result.message.startswith("INVALID_ARGUMENT")
    assert needle.lower() in result.message.lower()
    assert_empty(target)


def test_identity_without_access_fails_with_no_files(daemon: DaemonProcess) -> None:
    target = mount_dir(daemon)
    options = seed_options(daemon, target, **{"kubernetes.io/pod.name": "no-access-pod"})
    result = shim(daemon, "mount", str(target), go_json(options))
    assert result.status == "Failure"
    assert result.message.startswith("PERMISSION_DENIED")
    assert_empty(target)


def test_daemon_down_fails_fast(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    daemon.stop()
    target = mount_dir(daemon)
    result = shim(daemon, "mount", str(target), go_json(seed_options(daemon, target)))
    assert result.status == "Failure"
    assert "not reachable" in result.message  # how fast: bench/flexvolume.py
