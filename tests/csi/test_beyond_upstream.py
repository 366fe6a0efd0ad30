"""Through the CSI front door (NodePublishVolume over the daemon's unix socket, as kubelet calls
it): optional objects, several vaults, selection, split certificates, AzureStack environment
files, and a running daemon's rotation following new matches and optional objects as they come
and go; the per-vault request budget from its flags."""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from devstack.client import Devstack
from devstack.harness import world
from devstack.harness.daemon import DaemonProcess
from tests.csi.support import new_volume_id
from tests.fixtures.daemon import StartDaemon


def objects_yaml(*entries: dict[str, str]) -> str:
    lines = ["array:"]
    for entry in entries:
        lines.append("  - |")
        lines.extend(f"    {k}: {json.dumps(v)}" for k, v in entry.items())
    return "\n".join(lines) + "\n"


def yaml_attrs(daemon: DaemonProcess, *entries: dict[str, str], **extra: str) -> dict[str, str]:
    attrs = daemon.pod_attributes(**extra)
    del attrs["keyvaultobjectnames"], attrs["keyvaultobjecttypes"]
    attrs["objects"] = objects_yaml(*entries)
    return attrs


def files(target: Path) -> list[str]:
    found = []
    for root, dirs, names in os.walk(target, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        rel = Path(root).relative_to(target)
        found += [str(rel / n) for n in names if not n.startswith("..")]
    return sorted(found)


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module", autouse=True)
def other_vault_readable(devstack: Devstack) -> None:
    devstack.set_policy(world.OTHER_VAULT, "pod-identity", secrets=["get", "list"])


def test_one_volume_with_every_new_option(csi: DaemonProcess, devstack: Devstack) -> None:
    prefix = f"csisel-{uuid.uuid4().hex[:6]}"
    for i in (1, 2):
        devstack.set_secret("testkv", f"{prefix}-{i}", f"v{i}")
    target = csi.target(f"beyond-{uuid.uuid4().hex[:6]}")
    attrs = yaml_attrs(
        csi,
        {"objectName": "secret1", "objectType": "secret"},
        {"objectName": f"{prefix}-missing", "objectType": "secret", "optional": "true"},
        {
            "objectName": "secret1",
            "objectType": "secret",
            "keyvaultName": "otherkv",
            "objectAlias": "other/secret1",
        },
        {"objectNamePattern": f"{prefix}-*", "objectType": "secret", "objectAlias": "sel"},
        {
            "objectName": "pfx-cert",
            "objectType": "secret",
            "objectAlias": "tls",
            "certParts": "key:0600,crt,chain",
        },
    )
    csi.publish(new_volume_id(), target, attrs)
    assert files(target) == [
        "other/secret1",
        "secret1",
        f"sel/{prefix}-1",
        f"sel/{prefix}-2",
        "tls.chain",
        "tls.crt",
        "tls.key",
    ]
    assert (target / "other" / "secret1").read_bytes() == b"otherkv-secret1-value"
    assert stat.S_IMODE((target / "tls.key").stat().st_mode) == 0o600
    assert (target / "tls.crt").read_bytes().count(b"BEGIN CERTIFICATE") == 1
    assert (target / "tls.chain").read_bytes().count(b"BEGIN CERTIFICATE") == 2


def test_selection_past_its_bound_is_a_clear_failed_precondition(
    csi: DaemonProcess,
) -> None:
    attrs = yaml_attrs(
        csi, {"objectNamePattern": "app-secret-*", "objectType": "secret", "maxMatches": "2"}
    )
    with pytest.raises(grpc.RpcError) as info:
        csi.publish(new_volume_id(), csi.target(f"bound-{uuid.uuid4().hex[:6]}"), attrs)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "matches 3 objects, more than its bound of 2" in (info.value.details() or "")


def test_azure_stack_cloud_environment_file(
    csi: DaemonProcess, devstack: Devstack, tmp_path: Path
) -> None:
    cloud = json.loads(Path(devstack.cloud_config).read_text())
    env = tmp_path / "azurestackcloud.json"
    env.write_text(
        json.dumps(
            {
                "name": "AzureStackCloud",
                "activeDirectoryEndpoint": cloud["authority_host"],
                "keyVaultDNSSuffix": "vault.local.azurestack.external",
                "keyVaultEndpoint": cloud["keyvault_resource"],
                "vault_urls": cloud["vault_urls"],
            }
        )
    )
    target = csi.target(f"stack-{uuid.uuid4().hex[:6]}")
    attrs = csi.pod_attributes(cloudName="AzureStackCloud", cloudEnvFileName=str(env))
    csi.publish(new_volume_id(), target, attrs)
    assert (target / "secret1").read_bytes() == b"testkv-secret1-value"
    missing = csi.pod_attributes(cloudName="AzureStackCloud")
    with pytest.raises(grpc.RpcError) as info:
        csi.publish(new_volume_id(), csi.target(f"stack-{uuid.uuid4().hex[:6]}"), missing)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_running_daemon_follows_selections_and_optional_objects(
    start_daemon: StartDaemon, devstack: Devstack
) -> None:
    daemon = start_daemon("--rotation-poll-interval", "1s")
    prefix = f"drsel-{uuid.uuid4().hex[:6]}"
    optional = f"{prefix}-opt"
    devstack.set_secret("testkv", f"{prefix}-a", "a1")
    target = daemon.target("follow")
    attrs = yaml_attrs(
        daemon,
        {"objectNamePattern": f"{prefix}-[ab]", "objectType": "secret", "objectAlias": "sel"},
        {"objectName": optional, "objectType": "secret", "optional": "true"},
    )
    daemon.publish("follow", target, attrs)
    assert files(target) == [f"sel/{prefix}-a"]

    devstack.set_secret("testkv", f"{prefix}-b", "b1")
    devstack.set_secret("testkv", optional, "here")
    assert wait_for(lambda: files(target) == [optional, f"sel/{prefix}-a", f"sel/{prefix}-b"])
    devstack.delete_secret("testkv", f"{prefix}-a")
    devstack.delete_secret("testkv", optional)
    assert wait_for(lambda: files(target) == [f"sel/{prefix}-b"]), daemon.log()
    assert "kv_driver_optional_missing_total" in daemon.metrics()


def test_the_vault_budget_flag_holds_requests_back(
    start_daemon: StartDaemon, devstack: Devstack
) -> None:
    daemon = start_daemon("--keyvault-rate-limit", "2", "--keyvault-rate-window", "500ms")
    attrs = daemon.pod_attributes(
        keyvaultobjectnames="app-secret-1;app-secret-2;app-secret-3;secret1",
        keyvaultobjecttypes="secret;secret;secret;secret",
    )
    target = daemon.target("budget")
    daemon.publish("budget", target, attrs)
    assert len(files(target)) == 4
    line = next(
        ln
        for ln in daemon.metrics().splitlines()
        if ln.startswith('kv_driver_keyvault_rate_limited_total{vault="testkv"}')
    )
    assert float(line.split()[-1]) >= 2
