"""The tokens handed out work against Key Vault, are cached and shared only where safe,
refreshed before expiry, and never appear in error text."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
import requests
from azure.keyvault.secrets import SecretClient

from azcommon.cloud import Cloud
from azcommon.credentials.base import KvCredential
from azcommon.credentials.polling import safe_body
from azcommon.errors import InvalidArgument, Unavailable
from azcommon.http import make_transport
from devstack.client import Devstack
from driver.auth.provider import CredentialProvider
from driver.config import Settings
from driver.model import (
    AuthMaterial,
    IdentityMode,
)
from tests.engine.auth_support import (
    SECRET1,
    Clock,
    claims_of,
    nmi_requests,
    podid_spec,
    sp_spec,
    spec_for,
    wi_spec,
)

# --- the tokens work against Key Vault -----------------------------------------------------------


@pytest.mark.parametrize("mode", list(IdentityMode))
def test_key_vault_accepts_the_token(
    devstack: Devstack,
    provider: CredentialProvider,
    session: requests.Session,
    cloud: Cloud,
    mode: IdentityMode,
) -> None:
    auth = AuthMaterial()
    if mode is IdentityMode.POD_IDENTITY:
        spec = podid_spec(devstack)
    elif mode is IdentityMode.SERVICE_PRINCIPAL:
        spec = sp_spec(devstack)
        auth = AuthMaterial(client_secret=devstack.client_secret("kvcreds"))
    elif mode is IdentityMode.VM_MANAGED_IDENTITY:
        spec = spec_for(devstack, mode, client_id=devstack.client_id("vm-user"))
    else:
        spec = wi_spec(devstack)
        auth = AuthMaterial(sa_token=devstack.sa_token("default", "workload-sa"))
    credential = provider.credential_for(spec, auth, cloud)
    client = SecretClient(
        cloud.vault_url("testkv"),
        credential,
        verify_challenge_resource=False,
        transport=make_transport(session, 10.0, cloud.ca_bundle),
    )
    with client:
        assert client.get_secret("secret1").value == SECRET1
    # Closing the client must not close the shared credential.
    assert credential.get_token(cloud.scope).token


def test_only_key_vault_tokens_are_handed_out(
    clean_faults: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    devstack = clean_faults
    credential = provider.credential_for(podid_spec(devstack), AuthMaterial(), cloud)
    with pytest.raises(InvalidArgument, match=r"management\.azure\.com"):
        credential.get_token("https://management.azure.com/.default")
    assert nmi_requests(devstack) == 0


# --- caching and sharing -------------------------------------------------------------------------


def test_token_is_cached_and_shared_across_volumes(
    clean_faults: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    devstack = clean_faults
    one = provider.credential_for(podid_spec(devstack, objects=("secret1",)), AuthMaterial(), cloud)
    two = provider.credential_for(
        podid_spec(devstack, objects=("app-secret-1",)), AuthMaterial(), cloud
    )
    assert one is two
    first = one.get_token(cloud.scope)
    second = two.get_token(cloud.scope)
    assert first.token == second.token
    assert nmi_requests(devstack) == 1

    auth = AuthMaterial(client_secret=devstack.client_secret("kvcreds"))
    sp = provider.credential_for(sp_spec(devstack), auth, cloud)
    sp.get_token(cloud.scope)
    provider.credential_for(sp_spec(devstack), auth, cloud).get_token(cloud.scope)
    assert devstack.count(operation="token") == 1


def test_different_pods_never_share_tokens(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    mine = provider.credential_for(podid_spec(devstack), AuthMaterial(), cloud)
    theirs = provider.credential_for(podid_spec(devstack, "no-access-pod"), AuthMaterial(), cloud)
    assert mine is not theirs
    assert claims_of(mine.get_token(cloud.scope).token)["appid"] == devstack.client_id(
        "pod-identity"
    )
    assert claims_of(theirs.get_token(cloud.scope).token)["appid"] == devstack.client_id(
        "no-access"
    )
    # The same pod name in another namespace is another pod.
    other_ns = podid_spec(devstack, namespace="other")
    assert provider.identity_key(other_ns, AuthMaterial()) != provider.identity_key(
        podid_spec(devstack), AuthMaterial()
    )


def test_concurrent_requests_share_one_upstream_call(
    clean_faults: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    devstack = clean_faults
    devstack.fault(endpoint="nmi", latency_ms=300)
    credential = provider.credential_for(podid_spec(devstack), AuthMaterial(), cloud)
    start = threading.Barrier(8)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            tokens.append(credential.get_token(cloud.scope).token)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert nmi_requests(devstack) == 1


def test_token_refreshed_before_expiry_and_kept_through_a_brief_outage(
    clean_faults: Devstack, session: requests.Session, cloud: Cloud
) -> None:
    devstack = clean_faults
    clock = Clock()
    provider = CredentialProvider(session, Settings(nmi_deadline=0.5), clock)
    credential: KvCredential = provider.credential_for(podid_spec(devstack), AuthMaterial(), cloud)
    first = credential.get_token(cloud.scope)
    lifetime = first.expires_on - clock()

    # Within 5 minutes of expiry: a fresh token is fetched (the devstack issues on real time,
    # so the new one has 200 s left on our clock and is due for refresh at half-life).
    clock.offset = lifetime - 200
    second = credential.get_token(cloud.scope)
    assert nmi_requests(devstack) == 2
    assert second.token != first.token

    # Due for refresh while NMI is failing: the still-valid token keeps being served ...
    devstack.fault(endpoint="nmi", rate_503=1.0)
    clock.offset += 110
    assert credential.get_token(cloud.scope).token == second.token
    # Meanwhile callers get it at once instead of each waiting out a failing refresh.
    failing = nmi_requests(devstack)
    assert credential.get_token(cloud.scope).token == second.token
    assert nmi_requests(devstack) == failing
    # ... but never one that is about to expire.
    clock.offset += 50
    with pytest.raises(Unavailable, match="503"):
        credential.get_token(cloud.scope)


# --- small pure parts ----------------------------------------------------------------------------


def test_error_bodies_are_shortened_and_token_free() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    body = json.dumps({"error": "boom", "access_token": "abc123", "detail": jwt + " " + "x" * 500})
    text = safe_body(body)
    assert "eyJ" not in text and "abc123" not in text
    assert len(text) <= 200
    assert "boom" in text


def test_identity_keys_name_the_identity(devstack: Devstack, session: requests.Session) -> None:
    provider = CredentialProvider(session, Settings())
    vm_system = spec_for(devstack, IdentityMode.VM_MANAGED_IDENTITY)
    vm_user = replace(
        vm_system, identity=replace(vm_system.identity, client_id=devstack.client_id("vm-user"))
    )
    keys = {
        provider.identity_key(vm_system, AuthMaterial()),
        provider.identity_key(vm_user, AuthMaterial()),
        provider.identity_key(wi_spec(devstack), AuthMaterial(sa_token="t1")),
        provider.identity_key(wi_spec(devstack, "another-sa"), AuthMaterial(sa_token="t1")),
        provider.identity_key(podid_spec(devstack), AuthMaterial()),
        provider.identity_key(podid_spec(devstack, nmi_port=2580), AuthMaterial()),
    }
    assert len(keys) == 6
    # A republished service-account token is still the same identity.
    assert provider.identity_key(wi_spec(devstack), AuthMaterial(sa_token="t1")) == (
        provider.identity_key(wi_spec(devstack), AuthMaterial(sa_token="t2"))
    )
