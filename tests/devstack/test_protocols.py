"""Wire-level behaviour a client depends on: the bearer challenge, token checks, the token
endpoints (v1, v2, discovery), IMDS and NMI."""

from __future__ import annotations

import json
import time

import requests

from devstack.client import Devstack
from tests.devstack.conftest import admin_token

API = "api-version=7.5"


def _get(
    ds: Devstack, path: str, token: str | None = None, vault: str = "testkv"
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        f"{ds.vault_url(vault)}{path}", headers=headers, verify=ds.ca_bundle, timeout=10
    )


def test_request_without_token_gets_the_bearer_challenge(devstack: Devstack) -> None:
    response = _get(devstack, f"/secrets/secret1?{API}")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{devstack.authority_host}/{devstack.tenant_id}", '
        'resource="https://vault.azure.net"'
    )
    assert response.json()["error"]["code"] == "Unauthorized"


def test_bad_expired_and_wrong_audience_tokens_get_401(devstack: Devstack) -> None:
    good = admin_token(devstack)
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    expired = devstack.access_token(expires_in=-60)
    other_audience = devstack.access_token(resource="https://management.azure.com")
    for token in ("not-a-jwt", tampered, expired, other_audience):
        response = _get(devstack, f"/secrets/secret1?{API}", token)
        assert response.status_code == 401, token[:10]
        assert response.json()["error"]["code"] == "Unauthorized"
        assert "WWW-Authenticate" in response.headers
    assert _get(devstack, f"/secrets/secret1?{API}", good).status_code == 200


def test_trailing_slash_audience_is_accepted(devstack: Devstack) -> None:
    token = devstack.access_token(resource="https://vault.azure.net/")
    assert _get(devstack, f"/secrets/secret1?{API}", token).status_code == 200


def test_v2_token_claims(devstack: Devstack) -> None:
    token = admin_token(devstack)
    payload = token.split(".")[1]
    claims = json.loads(__import__("base64").urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == "https://vault.azure.net"
    assert claims["tid"] == devstack.tenant_id
    assert claims["appid"] == claims["oid"] == devstack.admin["client_id"]
    assert claims["iss"] == f"{devstack.authority_host}/{devstack.tenant_id}/"
    assert claims["exp"] > time.time()


def test_v1_token_endpoint_takes_resource_and_returns_string_numbers(devstack: Devstack) -> None:
    response = requests.post(
        f"{devstack.authority_host}/{devstack.tenant_id}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": devstack.client_id("kvcreds"),
            "client_secret": devstack.client_secret("kvcreds"),
            "resource": "https://vault.azure.net",
        },
        verify=devstack.ca_bundle,
        timeout=10,
    )
    body = response.json()
    assert response.status_code == 200
    assert body["resource"] == "https://vault.azure.net"
    assert all(isinstance(body[k], str) for k in ("expires_in", "expires_on", "not_before"))
    assert _get(devstack, f"/secrets/secret1?{API}", body["access_token"]).status_code == 200


def test_token_endpoint_errors_use_entra_shape(devstack: Devstack) -> None:
    url = f"{devstack.authority_host}/{devstack.tenant_id}/oauth2/v2.0/token"
    cases = [
        (
            {
                "grant_type": "client_credentials",
                "client_id": "unknown",
                "client_secret": "x",
                "scope": "https://vault.azure.net/.default",
            },
            400,
            "unauthorized_client",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": devstack.client_id("kvcreds"),
                "client_secret": "x",
                "scope": "https://vault.azure.net/.default",
            },
            401,
            "invalid_client",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": devstack.client_id("kvcreds"),
                "client_secret": devstack.client_secret("kvcreds"),
                "scope": "https://vault.azure.net",
            },
            400,
            "invalid_scope",
        ),
        ({"grant_type": "password", "client_id": "x"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
    ]
    for form, status, error in cases:
        response = requests.post(url, data=form, verify=devstack.ca_bundle, timeout=10)
        assert (response.status_code, response.json()["error"]) == (status, error), form
        assert response.json()["error_codes"]
    unknown_tenant = requests.post(
        f"{devstack.authority_host}/not-a-tenant/oauth2/v2.0/token",
        data={},
        verify=devstack.ca_bundle,
        timeout=10,
    )
    assert unknown_tenant.status_code == 400
    assert "AADSTS90002" in unknown_tenant.json()["error_description"]


def test_openid_discovery_points_at_the_token_endpoint(devstack: Devstack) -> None:
    base = f"{devstack.authority_host}/{devstack.tenant_id}"
    doc = requests.get(
        f"{base}/v2.0/.well-known/openid-configuration", verify=devstack.ca_bundle, timeout=10
    ).json()
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"


def test_imds_requires_metadata_header_and_knows_assigned_identities(devstack: Devstack) -> None:
    params = {"api-version": "2018-02-01", "resource": "https://vault.azure.net"}
    no_header = requests.get(devstack.imds_endpoint, params=params, timeout=10)
    assert no_header.status_code == 400
    assert no_header.json()["error"] == "invalid_request"

    ok = requests.get(
        devstack.imds_endpoint, params=params, headers={"Metadata": "true"}, timeout=10
    )
    body = ok.json()
    assert ok.status_code == 200
    assert body["client_id"] == devstack.client_id("vm-system")
    for key in ("expires_in", "expires_on", "ext_expires_in", "not_before"):
        assert isinstance(body[key], str) and body[key].isdigit()
    assert body["token_type"] == "Bearer" and body["resource"] == "https://vault.azure.net"

    unknown = requests.get(
        devstack.imds_endpoint,
        params={**params, "client_id": "c0000000-0000-0000-0000-000000000000"},
        headers={"Metadata": "true"},
        timeout=10,
    )
    assert unknown.status_code == 400


def _nmi(
    ds: Devstack, headers: dict[str, str], resource: str = "https://vault.azure.net"
) -> requests.Response:
    return requests.get(
        f"http://127.0.0.1:{ds.nmi_port}/host/token/",
        params={"resource": resource} if resource else {},
        headers=headers,
        timeout=10,
    )


def test_nmi_returns_token_and_client_id_for_assigned_pod(devstack: Devstack) -> None:
    response = _nmi(devstack, {"podname": "nginx-flex-kv-podid", "podns": "default"})
    body = response.json()
    assert response.status_code == 200
    assert body["clientid"] == devstack.client_id("pod-identity")
    token = body["token"]
    assert set(token) == {
        "access_token",
        "refresh_token",
        "expires_in",
        "expires_on",
        "not_before",
        "resource",
        "token_type",
    }
    assert token["expires_on"].isdigit() and int(token["expires_on"]) > time.time()
    assert _get(devstack, f"/secrets/secret1?{API}", token["access_token"]).status_code == 200


def test_nmi_error_cases(devstack: Devstack) -> None:
    assert _nmi(devstack, {"podname": "nginx-flex-kv-podid"}).status_code == 400
    assert _nmi(devstack, {"podname": "x", "podns": "default"}, resource="").status_code == 400
    missing = _nmi(devstack, {"podname": "no-such-pod", "podns": "default"})
    assert missing.status_code == 404
    assert "default/no-such-pod" in missing.text


def test_nmi_token_for_no_access_pod_is_forbidden_at_the_vault(devstack: Devstack) -> None:
    body = _nmi(devstack, {"podname": "no-access-pod", "podns": "default"}).json()
    assert body["clientid"] == devstack.client_id("no-access")
    response = _get(devstack, f"/secrets/secret1?{API}", body["token"]["access_token"])
    assert response.status_code == 403
    assert response.json()["error"]["innererror"]["code"] == "AccessDenied"
