"""The devstack process: startup and shutdown, devstack.json / cloud.json, the CLI, seed files,
pod-assignment delay and access revocation (on a private devstack, so the shared one is not
disturbed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from cryptography import x509

from azcommon.cloud import load_cloud_config
from devstack.client import Devstack
from devstack.harness.world import TENANT
from tests.devstack.conftest import secret_client, sp_credential

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_up_writes_state_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "up", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        state_file = tmp_path / "devstack.json"
        deadline = time.monotonic() + 20
        while not state_file.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        state = json.loads(state_file.read_text())
        assert state["pid"] == process.pid
        assert requests.get(state["admin_url"] + "/health", timeout=5).json() == {"ok": True}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert b"Traceback" not in stderr


def test_state_file_describes_the_default_world(devstack: Devstack) -> None:
    raw = devstack.raw
    assert raw["tenant_id"] == TENANT
    assert set(raw["vaults"]) == {"testkv", "otherkv"}
    assert set(raw["identities"]) == {
        "admin",
        "pod-identity",
        "no-access",
        "kvcreds",
        "vm-system",
        "vm-user",
        "workload",
        "mic",
    }
    assert raw["pods"]["default/slow-pod"] == {"identity": "pod-identity", "delay_seconds": 3.0}
    assert raw["federations"][0]["service_account"] == "workload-sa"
    assert raw["imds_endpoint"].startswith("http://127.0.0.1:")
    ca = x509.load_pem_x509_certificate(Path(raw["ca_bundle"]).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_cloud_config_is_readable_by_the_driver(devstack: Devstack) -> None:
    cloud = load_cloud_config(Path(devstack.cloud_config))
    assert cloud.name == "DevStack"
    assert cloud.authority_host == devstack.authority_host
    assert cloud.vault_url("testkv") == devstack.vault_url("testkv")
    assert cloud.ca_bundle == devstack.ca_bundle
    assert cloud.imds_endpoint == devstack.imds_endpoint
    assert cloud.scope == "https://vault.azure.net/.default"


def test_cli_secret_set_disable_enable(devstack: Devstack, unique_name) -> None:
    name = unique_name()
    state = str(devstack.state_dir)
    result = _cli(
        "secret",
        "set",
        "--state-dir",
        state,
        "testkv",
        name,
        "cli-value",
        "--content-type",
        "text/plain",
    )
    assert result.returncode == 0, result.stderr
    version = result.stdout.strip()
    client = secret_client(devstack, sp_credential(devstack, "admin"))
    assert client.get_secret(name).properties.version == version

    assert _cli("secret", "disable", "--state-dir", state, "testkv", name, version).returncode == 0
    with pytest.raises(HttpResponseError) as info:
        client.get_secret(name)
    assert info.value.status_code == 403
    assert _cli("secret", "enable", "--state-dir", state, "testkv", name, version).returncode == 0
    assert client.get_secret(name).value == "cli-value"


def test_cli_counters_fault_and_sa_token(clean_faults: Devstack) -> None:
    state = str(clean_faults.state_dir)
    assert (
        _cli("fault", "--state-dir", state, "--vault", "otherkv", "--rate-503", "1").returncode == 0
    )
    assert (
        requests.get(clean_faults.admin_url + "/faults", timeout=5).json()["faults"][0]["vault"]
        == "otherkv"
    )
    assert _cli("fault", "--state-dir", state, "--clear").returncode == 0

    token = _cli(
        "sa-token",
        "--state-dir",
        state,
        "--namespace",
        "default",
        "--service-account",
        "workload-sa",
    )
    assert token.returncode == 0 and token.stdout.count(".") == 2

    counters = _cli("counters", "--state-dir", state)
    assert counters.returncode == 0
    assert "requests" in json.loads(counters.stdout)


def test_cli_reports_errors_without_traceback(devstack: Devstack, tmp_path: Path) -> None:
    missing = _cli("counters", "--state-dir", str(tmp_path))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    bad_vault = _cli("secret", "set", "--state-dir", str(devstack.state_dir), "nokv", "x", "y")
    assert bad_vault.returncode == 1 and "nokv" in bad_vault.stderr


def test_bad_seed_fails_with_a_message(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("identities: {a: {kind: martian, client_id: x}}\nadmin: a\n")
    result = _cli("up", "--state-dir", str(tmp_path / "s"), "--seed", str(seed))
    assert result.returncode == 2
    assert "martian" in result.stderr and "Traceback" not in result.stderr


# --- a private devstack with a custom seed ------------------------------------------------------


def _nmi_status(ds: Devstack, pod: str) -> int:
    return requests.get(
        f"http://127.0.0.1:{ds.nmi_port}/host/token/",
        params={"resource": "https://vault.azure.net"},
        headers={"podname": pod, "podns": "ns1"},
        timeout=10,
    ).status_code


def test_pod_assignment_delay(custom_stack: Devstack) -> None:
    assert _nmi_status(custom_stack, "ready-pod") == 200
    # The late pod's identity is assigned 6 s after start: a client retrying gets through.
    statuses = [_nmi_status(custom_stack, "late-pod")]
    deadline = time.monotonic() + 15
    while statuses[-1] != 200 and time.monotonic() < deadline:
        time.sleep(0.25)
        statuses.append(_nmi_status(custom_stack, "late-pod"))
    assert statuses[-1] == 200
    assert statuses[0] == 404
    assert set(statuses[:-1]) == {404}


def test_custom_seed_world(custom_stack: Devstack) -> None:
    assert custom_stack.tenant_id == "22222222-2222-2222-2222-222222222222"
    client = secret_client(custom_stack, sp_credential(custom_stack, "reader"), vault="seedkv")
    versions = sorted(
        client.list_properties_of_secret_versions("multi"), key=lambda p: p.created_on
    )
    assert [v.enabled for v in versions] == [True, False]
    assert client.get_secret("multi", versions[0].version).value == "first"
    with pytest.raises(HttpResponseError) as info:
        client.get_secret("multi")  # the latest version is disabled
    assert info.value.status_code == 403

    pem = client.get_secret("from-pem").value
    chain = x509.load_pem_x509_certificates(pem.encode())
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=seeded-pem",
        "CN=seeded-pem Intermediate CA",
        "CN=seeded-pem Root CA",
    ]


def test_revoke_removes_access(custom_stack: Devstack) -> None:
    client = secret_client(custom_stack, sp_credential(custom_stack, "reader"), vault="seedkv")
    version = custom_stack.set_secret("seedkv", "revoke-me", "v")
    assert client.get_secret("revoke-me").properties.version == version
    custom_stack.revoke("reader")
    with pytest.raises(HttpResponseError) as info:
        client.get_secret("revoke-me")
    assert info.value.status_code == 403
    custom_stack.set_policy("seedkv", "reader", secrets=["get", "list"])
    assert client.get_secret("revoke-me").value == "v"


def test_start_fails_fast_when_the_process_dies(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("admin: nobody\n")
    with pytest.raises(Exception, match="exited with status 2"):
        Devstack.start(tmp_path / "state", seed=seed)
    assert not os.path.exists(tmp_path / "state" / "devstack.json")
