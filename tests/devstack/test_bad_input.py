"""Bad input gets the real service's error shape, never a traceback."""

from __future__ import annotations

import pytest
import requests

from devstack.client import Devstack
from devstack.world import MAX_SECRET_BYTES
from tests.devstack.conftest import admin_token


@pytest.fixture(scope="module")
def token(devstack: Devstack) -> str:
    return admin_token(devstack)


def _call(
    ds: Devstack, method: str, path: str, token: str, body: bytes | None = None
) -> requests.Response:
    return requests.request(
        method,
        f"{ds.vault_url('testkv')}{path}",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        verify=ds.ca_bundle,
        timeout=10,
    )


def _assert_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.text


def test_malformed_json_body(devstack: Devstack, token: str, unique_name) -> None:
    for body in (b"{not json", b"[1, 2]", b"", b'{"value": 5}'):
        response = _call(devstack, "PUT", f"/secrets/{unique_name()}?api-version=7.5", token, body)
        _assert_error(response, 400, "BadParameter")


def test_api_version_missing_or_malformed(devstack: Devstack, token: str) -> None:
    _assert_error(_call(devstack, "GET", "/secrets/secret1", token), 400, "BadParameter")
    for version in ("banana", "7", "7.5.1", "2025-7-1"):
        response = _call(devstack, "GET", f"/secrets/secret1?api-version={version}", token)
        _assert_error(response, 400, "BadParameter")


def test_secret_value_size_limit(devstack: Devstack, token: str, unique_name) -> None:
    name = unique_name()
    at_limit = b'{"value": "' + b"a" * MAX_SECRET_BYTES + b'"}'
    over = b'{"value": "' + b"a" * (MAX_SECRET_BYTES + 1) + b'"}'
    assert (
        _call(devstack, "PUT", f"/secrets/{name}?api-version=7.5", token, at_limit).status_code
        == 200
    )
    _assert_error(
        _call(devstack, "PUT", f"/secrets/{name}?api-version=7.5", token, over), 400, "BadParameter"
    )


def test_invalid_names_and_unknown_paths(devstack: Devstack, token: str) -> None:
    _assert_error(
        _call(devstack, "GET", "/secrets/bad_name!?api-version=7.5", token), 400, "BadParameter"
    )
    _assert_error(_call(devstack, "GET", "/nothing/here?api-version=7.5", token), 404, "NotFound")
    _assert_error(
        _call(devstack, "POST", "/secrets/secret1?api-version=7.5", token, b"{}"),
        405,
        "MethodNotAllowed",
    )


def test_bad_key_and_certificate_requests(devstack: Devstack, token: str, unique_name) -> None:
    cases = [
        ("POST", f"/keys/{unique_name('k')}/create", b'{"kty": "oct"}'),
        ("POST", f"/keys/{unique_name('k')}/create", b'{"kty": "EC", "crv": "P-192"}'),
        ("POST", f"/keys/{unique_name('k')}/create", b"{}"),
        ("POST", f"/certificates/{unique_name('c')}/create", b'{"policy": {"x509_props": {}}}'),
        ("POST", f"/certificates/{unique_name('c')}/import", b'{"value": "!!!"}'),
        ("POST", f"/certificates/{unique_name('c')}/import", b'{"value": "aGVsbG8="}'),
    ]
    for method, path, body in cases:
        _assert_error(
            _call(devstack, method, f"{path}?api-version=7.5", token, body), 400, "BadParameter"
        )


def test_admin_api_rejects_bad_input_with_error_shape(devstack: Devstack) -> None:
    for method, path, body in (
        ("POST", "/faults", b'{"rate_429": 7}'),
        ("POST", "/faults", b'{"endpoint": "moon"}'),
        ("POST", "/vaults/testkv/secrets/x", b"{nope"),
        ("POST", "/vaults/nokv/secrets/x", b'{"value": "v"}'),
    ):
        response = requests.request(method, devstack.admin_url + path, data=body, timeout=10)
        assert response.status_code in (400, 404)
        assert response.json()["error"]["code"]
