"""A pod's token comes from NMI for the identity assigned to it; slow assignments are waited for,
missing ones fail retryably."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from azcommon.cloud import Cloud, load_cloud_config
from azcommon.errors import InvalidArgument, Unavailable
from azcommon.http import make_session
from devstack.client import Devstack
from driver.auth.nmi import NmiCredential
from driver.auth.provider import CredentialProvider
from driver.config import Settings
from driver.model import (
    AuthMaterial,
)
from tests.engine.auth_support import Hooks, claims_of, free_port, nmi_requests, podid_spec

# --- pod identity --------------------------------------------------------------------------------


def test_pod_identity_token_comes_from_nmi_for_the_pods_identity(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud, hooks: Hooks
) -> None:
    credential = provider.credential_for(podid_spec(devstack), AuthMaterial(), cloud)
    token = credential.get_token(cloud.scope)
    assert claims_of(token.token)["appid"] == devstack.client_id("pod-identity")
    # The identity NMI resolved is exposed, for de-duplicating rotation by real identity.
    assert credential.client_id == devstack.client_id("pod-identity")
    assert ("nmi", "200") in hooks.calls


def test_slow_assignment_is_waited_for(tmp_path: Path, session: requests.Session) -> None:
    # A fresh devstack: slow-pod's identity is "assigned" 3 s after start; NMI says 404 before.
    stack = Devstack.start(tmp_path / "stack")
    try:
        cloud = load_cloud_config(Path(stack.cloud_config))
        own_session = make_session(cloud.ca_bundle)
        provider = CredentialProvider(own_session, Settings(nmi_deadline=20.0))
        credential = provider.credential_for(podid_spec(stack, "slow-pod"), AuthMaterial(), cloud)
        token = credential.get_token(cloud.scope)
        assert claims_of(token.token)["appid"] == stack.client_id("pod-identity")
        assert stack.count(operation="nmi", status=404) >= 1
        assert stack.count(operation="nmi", status=200) == 1
        own_session.close()
    finally:
        stack.stop()


def test_pod_without_identity_fails_retryably_after_the_deadline(
    devstack: Devstack, session: requests.Session, cloud: Cloud
) -> None:
    provider = CredentialProvider(session, Settings(nmi_deadline=1.0))
    spec = podid_spec(devstack, "pod-nobody-assigned")
    credential = provider.credential_for(spec, AuthMaterial(), cloud)
    with pytest.raises(Unavailable) as info:
        credential.get_token(cloud.scope)
    message = str(info.value)
    assert not info.value.final  # kubelet keeps the directory and retries
    assert f"127.0.0.1:{devstack.nmi_port}" in message
    assert "404" in message
    assert "default/pod-nobody-assigned" in message
    assert "eyJ" not in message


def test_nmi_not_listening_is_unavailable(
    devstack: Devstack, session: requests.Session, cloud: Cloud
) -> None:
    provider = CredentialProvider(session, Settings(nmi_deadline=0.5))
    port = free_port()
    credential = provider.credential_for(podid_spec(devstack, nmi_port=port), AuthMaterial(), cloud)
    with pytest.raises(Unavailable, match=f"127.0.0.1:{port}.*connection failed"):
        credential.get_token(cloud.scope)


def test_missing_pod_namespace_is_invalid_argument(
    devstack: Devstack, provider: CredentialProvider, session: requests.Session, cloud: Cloud
) -> None:
    spec = podid_spec(devstack, namespace="")
    with pytest.raises(InvalidArgument, match="pod namespace"):
        provider.credential_for(spec, AuthMaterial(), cloud)
    # And if such a request reaches NMI anyway, its 400 is not retried and maps the same way.
    direct = NmiCredential(
        session=session,
        port=devstack.nmi_port,
        pod_namespace="",
        pod_name="nginx-flex-kv-podid",
        resource=cloud.keyvault_resource,
        deadline=10.0,
        request_timeout=5.0,
    )
    with pytest.raises(InvalidArgument, match=r"HTTP 400.*podns"):
        direct.get_token(cloud.scope)


def test_nmi_retry_after_is_honoured(
    clean_faults: Devstack, session: requests.Session, cloud: Cloud
) -> None:
    devstack = clean_faults
    devstack.fault(endpoint="nmi", rate_429=1.0, retry_after=30)
    provider = CredentialProvider(session, Settings(nmi_deadline=2.0))
    credential = provider.credential_for(podid_spec(devstack), AuthMaterial(), cloud)
    with pytest.raises(Unavailable, match="429"):
        credential.get_token(cloud.scope)
    # Told to come back in 30 s with 2 s left: no hammering in between.
    assert nmi_requests(devstack) == 1
