"""The official Azure SDK clients, unchanged, against the devstack with every credential kind."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from devstack.client import Devstack
from tests.devstack.conftest import (
    cert_client,
    key_client,
    managed_credential,
    secret_client,
    sp_credential,
    workload_credential,
)


def test_client_secret_credential_reads_secret_key_and_certificate(devstack: Devstack) -> None:
    credential = sp_credential(devstack, "kvcreds")

    secret = secret_client(devstack, credential).get_secret("secret1")
    key = key_client(devstack, credential).get_key("key1")
    cert = cert_client(devstack, credential).get_certificate("cert1")

    assert secret.value == "testkv-secret1-value"
    assert secret.properties.content_type == "text/plain"
    assert (
        secret.id == f"{devstack.vault_url('testkv')}/secrets/secret1/{secret.properties.version}"
    )
    assert key.key_type == "RSA" and key.key.n and key.key.e
    assert cert.cer and cert.secret_id and cert.key_id


def test_managed_identity_system_assigned(imds_env: Devstack) -> None:
    secret = secret_client(imds_env, managed_credential()).get_secret("secret1")
    assert secret.value == "testkv-secret1-value"


def test_managed_identity_user_assigned_by_client_id(imds_env: Devstack) -> None:
    credential = managed_credential(imds_env.client_id("vm-user"))
    assert (
        secret_client(imds_env, credential).get_secret("app-secret-1").value == "app-secret-1-value"
    )
    assert key_client(imds_env, credential).get_key("ec-key").key.crv == "P-256"
    assert (
        cert_client(imds_env, credential).get_certificate("ec-cert").policy.key_curve_name
        == "P-256"
    )


def test_workload_identity_client_assertion(devstack: Devstack) -> None:
    credential = workload_credential(devstack)
    assert secret_client(devstack, credential).get_secret("secret1").value == "testkv-secret1-value"
    assert key_client(devstack, credential).get_key("key1").key_type == "RSA"
    assert cert_client(devstack, credential).get_certificate("cert1").name == "cert1"


def test_workload_identity_for_another_service_account_is_refused(devstack: Devstack) -> None:
    credential = workload_credential(devstack, sa="someone-else")
    with pytest.raises(ClientAuthenticationError, match="AADSTS700213"):
        secret_client(devstack, credential).get_secret("secret1")


def test_wrong_client_secret_is_refused(devstack: Devstack) -> None:
    credential = sp_credential(devstack, "kvcreds", secret="not-the-secret")
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        secret_client(devstack, credential).get_secret("secret1")


def test_identity_without_access_gets_403(imds_env: Devstack) -> None:
    credential = managed_credential(imds_env.client_id("no-access"))
    for call in (
        lambda: secret_client(imds_env, credential).get_secret("secret1"),
        lambda: key_client(imds_env, credential).get_key("key1"),
        lambda: cert_client(imds_env, credential).get_certificate("cert1"),
    ):
        with pytest.raises(HttpResponseError) as info:
            call()
        assert info.value.status_code == 403
        assert info.value.error is not None and info.value.error.code == "Forbidden"


def test_identity_with_access_to_one_vault_only_gets_403_on_the_other(devstack: Devstack) -> None:
    credential = sp_credential(devstack, "kvcreds")
    with pytest.raises(HttpResponseError) as info:
        secret_client(devstack, credential, vault="otherkv").get_secret("secret1")
    assert info.value.status_code == 403
    assert "does not have secrets get permission" in str(info.value)


def test_unknown_objects_get_404_with_the_services_codes(devstack: Devstack) -> None:
    credential = sp_credential(devstack, "kvcreds")
    cases = [
        (lambda: secret_client(devstack, credential).get_secret("nope"), "SecretNotFound"),
        (lambda: key_client(devstack, credential).get_key("nope"), "KeyNotFound"),
        (lambda: cert_client(devstack, credential).get_certificate("nope"), "CertificateNotFound"),
        (
            lambda: secret_client(devstack, credential).get_secret("secret1", "0" * 32),
            "SecretNotFound",
        ),
    ]
    for call, code in cases:
        with pytest.raises(ResourceNotFoundError) as info:
            call()
        assert info.value.error is not None and info.value.error.code == code


def test_each_vault_has_its_own_objects(devstack: Devstack) -> None:
    credential = sp_credential(devstack, "admin")
    assert secret_client(devstack, credential, "otherkv").get_secret("secret1").value == (
        "otherkv-secret1-value"
    )
