"""Service principal, VM managed identity and workload identity each get a token from Entra ID
or IMDS, and their errors name the fix without leaking secrets."""

from __future__ import annotations

import pytest

from azcommon.cloud import Cloud
from azcommon.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from devstack.client import Devstack
from driver.auth.provider import CredentialProvider
from driver.model import (
    AuthMaterial,
    IdentityMode,
)
from tests.engine.auth_support import Hooks, claims_of, sp_spec, spec_for, wi_spec

# --- service principal ---------------------------------------------------------------------------


def test_service_principal_gets_a_token(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud, hooks: Hooks
) -> None:
    auth = AuthMaterial(client_secret=devstack.client_secret("kvcreds"))
    credential = provider.credential_for(sp_spec(devstack), auth, cloud)
    token = credential.get_token(cloud.scope)
    assert claims_of(token.token)["appid"] == devstack.client_id("kvcreds")
    assert ("aad", "200") in hooks.calls


def test_wrong_client_secret_is_permission_denied_without_leaking_it(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    spec = sp_spec(devstack)
    good = AuthMaterial(client_secret=devstack.client_secret("kvcreds"))
    bad = AuthMaterial(client_secret="not-the-secret-value")
    # A token for the right secret is cached first ...
    provider.credential_for(spec, good, cloud).get_token(cloud.scope)
    assert provider.identity_key(spec, good) != provider.identity_key(spec, bad)
    # ... and is never served to a volume holding the wrong secret.
    wrong = provider.credential_for(spec, bad, cloud)
    with pytest.raises(PermissionDenied) as info:
        wrong.get_token(cloud.scope)
    message = str(info.value)
    assert "AADSTS7000215" in message
    assert "clientsecret" in message  # the hint says what to fix
    assert "not-the-secret-value" not in message
    assert devstack.client_secret("kvcreds") not in message
    assert devstack.client_secret("kvcreds") not in provider.identity_key(spec, good)


# --- VM managed identity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "requested"),
    [("vm-system", ""), ("vm-user", "vm-user")],
)
def test_vm_managed_identity_from_imds(
    devstack: Devstack,
    provider: CredentialProvider,
    cloud: Cloud,
    hooks: Hooks,
    identity: str,
    requested: str,
) -> None:
    client_id = devstack.client_id(requested) if requested else ""
    spec = spec_for(devstack, IdentityMode.VM_MANAGED_IDENTITY, client_id=client_id)
    credential = provider.credential_for(spec, AuthMaterial(), cloud)
    token = credential.get_token(cloud.scope)
    assert claims_of(token.token)["appid"] == devstack.client_id(identity)
    assert credential.client_id == devstack.client_id(identity)
    assert ("imds", "200") in hooks.calls


def test_user_assigned_identity_not_on_the_vm(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    missing = "b0000000-0000-0000-0000-00000000000f"
    spec = spec_for(devstack, IdentityMode.VM_MANAGED_IDENTITY, client_id=missing)
    with pytest.raises(FailedPrecondition, match=f"Identity not found.*{missing}"):
        provider.credential_for(spec, AuthMaterial(), cloud).get_token(cloud.scope)


# --- workload identity ---------------------------------------------------------------------------


def test_workload_identity_exchanges_the_service_account_token(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    auth = AuthMaterial(sa_token=devstack.sa_token("default", "workload-sa"))
    credential = provider.credential_for(wi_spec(devstack), auth, cloud)
    token = credential.get_token(cloud.scope)
    assert claims_of(token.token)["appid"] == devstack.client_id("workload")


def test_workload_identity_uses_the_latest_republished_token(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    spec = wi_spec(devstack, service_account="workload-sa")
    # kubelet first handed over a token the federated credential does not match ...
    stale = AuthMaterial(sa_token=devstack.sa_token("default", "some-other-sa"))
    credential = provider.credential_for(spec, stale, cloud)
    with pytest.raises(PermissionDenied) as info:
        credential.get_token(cloud.scope)
    assert "AADSTS700213" in str(info.value)
    assert "system:serviceaccount:default:workload-sa" in str(info.value)  # actionable hint
    assert "eyJ" not in str(info.value)
    # ... then republished with a good one: the same shared credential now succeeds.
    fresh = AuthMaterial(sa_token=devstack.sa_token("default", "workload-sa"))
    again = provider.credential_for(spec, fresh, cloud)
    assert again is credential
    assert claims_of(again.get_token(cloud.scope).token)["appid"] == devstack.client_id("workload")


def test_workload_identity_without_token_is_invalid_argument(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    with pytest.raises(InvalidArgument, match="api://AzureADTokenExchange"):
        provider.credential_for(wi_spec(devstack), AuthMaterial(), cloud)
