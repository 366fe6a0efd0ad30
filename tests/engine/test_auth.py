"""Credentials against the running devstack: NMI, Entra ID (secret and federated assertion) and
IMDS, with the official Key Vault SDK accepting the tokens."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.keyvault.secrets import SecretClient

from azcommon.cloud import Cloud, load_cloud_config
from azcommon.credentials.base import KvCredential
from azcommon.credentials.polling import safe_body
from azcommon.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable
from azcommon.http import make_session, make_transport
from devstack.client import Devstack
from driver.auth.modes.registry import MODES, module_for
from driver.auth.nmi import NmiCredential
from driver.auth.provider import CredentialProvider
from driver.config import Settings
from driver.keyvault.types.registry import KINDS, kind_of
from driver.model import (
    AuthMaterial,
    IdentityMode,
    IdentitySpec,
    ObjectSpec,
    ObjectType,
    PodInfo,
    VolumeSpec,
)

SECRET1 = "testkv-secret1-value"


# --- helpers -----------------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Hooks:
    """Records the metrics callback."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, kind: str, status: str) -> None:
        with self._lock:
            self.calls.append((kind, status))


class Clock:
    """Real time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


@pytest.fixture
def cloud(devstack: Devstack) -> Cloud:
    return load_cloud_config(Path(devstack.cloud_config))


@pytest.fixture
def session(cloud: Cloud) -> Iterator[requests.Session]:
    s = make_session(cloud.ca_bundle)
    yield s
    s.close()


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def provider(session: requests.Session, hooks: Hooks) -> CredentialProvider:
    return CredentialProvider(
        session, Settings(nmi_deadline=10.0, request_timeout=5.0), on_token_request=hooks
    )


def spec_for(
    devstack: Devstack,
    mode: IdentityMode,
    *,
    client_id: str = "",
    pod: PodInfo | None = None,
    nmi_port: int | None = None,
    objects: tuple[str, ...] = ("secret1",),
) -> VolumeSpec:
    return VolumeSpec(
        vault_name="testkv",
        tenant_id=devstack.tenant_id,
        identity=IdentitySpec(
            mode=mode,
            client_id=client_id,
            nmi_port=devstack.nmi_port if nmi_port is None else nmi_port,
        ),
        objects=tuple(ObjectSpec(name, ObjectType.SECRET) for name in objects),
        pod=pod or PodInfo(name="nginx-flex-kv-podid", namespace="default", uid="uid-1"),
    )


def podid_spec(devstack: Devstack, name: str = "nginx-flex-kv-podid", **kw: Any) -> VolumeSpec:
    pod = PodInfo(name=name, namespace=kw.pop("namespace", "default"), uid=f"uid-{name}")
    return spec_for(devstack, IdentityMode.POD_IDENTITY, pod=pod, **kw)


def sp_spec(devstack: Devstack) -> VolumeSpec:
    return spec_for(
        devstack, IdentityMode.SERVICE_PRINCIPAL, client_id=devstack.client_id("kvcreds")
    )


def wi_spec(devstack: Devstack, service_account: str = "workload-sa") -> VolumeSpec:
    pod = PodInfo(name="wi-pod", namespace="default", uid="uid-wi", service_account=service_account)
    return spec_for(
        devstack,
        IdentityMode.WORKLOAD_IDENTITY,
        client_id=devstack.client_id("workload"),
        pod=pod,
    )


def nmi_requests(devstack: Devstack) -> int:
    return devstack.count(operation="nmi")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


# --- one module per identity mode and per object type ----------------------------------------


def test_every_identity_mode_has_exactly_one_module() -> None:
    modes = [module.mode for module in MODES]
    assert sorted(modes) == sorted(IdentityMode)
    assert len(set(modes)) == len(modes)
    # Each in a file of its own.
    assert len({type(module).__module__ for module in MODES}) == len(MODES)
    assert all(module_for(mode).mode is mode for mode in IdentityMode)


def test_every_object_type_has_exactly_one_module() -> None:
    types = [kind.type for kind in KINDS]
    assert sorted(types) == sorted(ObjectType)
    assert len(set(types)) == len(types)
    assert len({type(kind).__module__ for kind in KINDS}) == len(KINDS)
    assert all(kind_of(object_type).type is object_type for object_type in ObjectType)


@pytest.mark.parametrize(
    ("mode", "stored", "per_volume"),
    [
        (IdentityMode.POD_IDENTITY, False, True),
        (IdentityMode.SERVICE_PRINCIPAL, True, False),
        (IdentityMode.VM_MANAGED_IDENTITY, False, False),
        (IdentityMode.WORKLOAD_IDENTITY, True, True),
    ],
)
def test_what_rotation_needs_from_each_mode(
    devstack: Devstack,
    session: requests.Session,
    mode: IdentityMode,
    stored: bool,
    per_volume: bool,
) -> None:
    # Rotation after a restart cannot authenticate a service principal or workload identity
    # without the secret inputs; pod and workload identities must prove, per volume, that the
    # shared Azure identity is still theirs.
    provider = CredentialProvider(session, Settings())
    spec = spec_for(devstack, mode)
    assert provider.needs_stored_auth(spec) is stored
    assert provider.proves_per_volume(spec) is per_volume


def test_pods_of_one_assigned_identity_share_a_principal_once_nmi_named_it(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    spec = podid_spec(devstack)
    key = provider.identity_key(spec, AuthMaterial())
    credential = provider.credential_for(spec, AuthMaterial(), cloud)
    # Before any token, NMI has not said which identity the pod has: the pod is its own check.
    assert provider.principal(spec, key, credential) == key
    credential.get_token(cloud.scope)
    principal = f"{devstack.tenant_id}/{devstack.client_id('pod-identity')}"
    assert provider.principal(spec, key, credential) == principal


def test_workload_identity_principal_is_the_application_and_others_their_identity(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    auth = AuthMaterial(sa_token=devstack.sa_token("default", "workload-sa"))
    wi = wi_spec(devstack)
    credential = provider.credential_for(wi, auth, cloud)
    key = provider.identity_key(wi, auth)
    expected = f"{devstack.tenant_id}/{devstack.client_id('workload')}"
    assert provider.principal(wi, key, credential) == expected
    # Another service account federated to the same application is the same principal.
    other = wi_spec(devstack, "another-sa")
    assert provider.principal(other, provider.identity_key(other, auth), credential) == expected

    vm = spec_for(devstack, IdentityMode.VM_MANAGED_IDENTITY)
    vm_key = provider.identity_key(vm, AuthMaterial())
    vm_credential = provider.credential_for(vm, AuthMaterial(), cloud)
    assert provider.principal(vm, vm_key, vm_credential) == vm_key


def test_a_spec_the_parser_would_refuse_is_refused_before_any_request(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    # Specs restored from the state store skip the parser; the mode's one check still runs.
    sp = sp_spec(devstack)
    with pytest.raises(InvalidArgument, match="clientsecret in the volume's secret"):
        provider.credential_for(sp, AuthMaterial(), cloud)
    wi = replace(wi_spec(devstack), pod=PodInfo(name="wi-pod", namespace="default"))
    with pytest.raises(InvalidArgument, match="service account name"):
        provider.credential_for(wi, AuthMaterial(sa_token="t"), cloud)
    assert len(provider) == 0
