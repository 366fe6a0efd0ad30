"""Fault injection per vault and endpoint, and the request counters."""

from __future__ import annotations

import pytest
import requests

from devstack.client import Devstack
from tests.devstack.conftest import admin_credential, admin_token, secret_client


def _get_secret(ds: Devstack, token: str, vault: str = "testkv") -> requests.Response:
    return requests.get(
        f"{ds.vault_url(vault)}/secrets/secret1?api-version=7.5",
        headers={"Authorization": f"Bearer {token}"},
        verify=ds.ca_bundle,
        timeout=10,
    )


def test_throttling_on_one_vault_only(clean_faults: Devstack) -> None:
    ds = clean_faults
    token = admin_token(ds)
    ds.fault(vault="testkv", endpoint="keyvault", rate_429=1.0, retry_after=7)

    throttled = _get_secret(ds, token)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "Throttled"
    assert _get_secret(ds, token, vault="otherkv").status_code == 200

    assert ds.count(vault="testkv", operation="secret.get", status=429) == 1
    assert ds.count(vault="otherkv", operation="secret.get", status=200) == 1


def test_service_unavailable(clean_faults: Devstack) -> None:
    token = admin_token(clean_faults)
    clean_faults.fault(vault="*", endpoint="keyvault", rate_503=1.0)
    response = _get_secret(clean_faults, token)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ServiceUnavailable"


def test_dropped_connections_are_counted_as_status_0(clean_faults: Devstack) -> None:
    token = admin_token(clean_faults)
    clean_faults.fault(vault="testkv", drop=1.0)
    with pytest.raises(requests.ConnectionError):
        _get_secret(clean_faults, token)
    assert clean_faults.count(vault="testkv", operation="secret.get", status=0) == 1


def test_faults_on_token_endpoint_leave_key_vault_alone(clean_faults: Devstack) -> None:
    token = admin_token(clean_faults)
    clean_faults.fault(endpoint="token", rate_503=1.0)
    with pytest.raises(requests.HTTPError):
        admin_token(clean_faults)
    assert _get_secret(clean_faults, token).status_code == 200
    assert clean_faults.count(operation="token", status=503) == 1


def test_nmi_fault(clean_faults: Devstack) -> None:
    clean_faults.fault(endpoint="nmi", rate_429=1.0, retry_after=3)
    response = requests.get(
        f"http://127.0.0.1:{clean_faults.nmi_port}/host/token/",
        params={"resource": "https://vault.azure.net"},
        headers={"podname": "nginx-flex-kv-podid", "podns": "default"},
        timeout=10,
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"


def test_latency_rule_still_answers_and_clear_restores(clean_faults: Devstack) -> None:
    clean_faults.fault(vault="testkv", latency_ms=20)
    client = secret_client(clean_faults, admin_credential(clean_faults))
    assert client.get_secret("secret1").value == "testkv-secret1-value"
    clean_faults.fault(vault="testkv", rate_503=1.0)
    clean_faults.clear_faults()
    assert client.get_secret("secret1").value == "testkv-secret1-value"


def test_sdk_retries_through_throttling_and_counters_show_it(clean_faults: Devstack) -> None:
    client = secret_client(clean_faults, admin_credential(clean_faults))
    client.get_secret("secret1")  # authenticate first
    clean_faults.reset_counters()
    clean_faults.fault(vault="testkv", endpoint="keyvault", rate_429=1.0, retry_after=0)
    with pytest.raises(Exception):  # noqa: B017 - the SDK gives up after its retries
        client.get_secret("secret1", retry_total=2)
    assert clean_faults.count(vault="testkv", operation="secret.get", status=429) == 3
    clean_faults.reset_counters()
    assert clean_faults.counters() == []
