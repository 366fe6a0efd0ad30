"""One credential per identity, shared by every volume that authenticates as it.

The cache key is the identity itself, never something coarser: a pod must never be handed a
token obtained for another pod, and a volume with a wrong client secret must never be served a
token obtained with the right one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from azure.core.credentials import TokenCredential

from driver.auth.aad import AssertionHolder, ServicePrincipalCredential, WorkloadIdentityCredential
from driver.auth.base import Clock, KvCredential, TokenRequestHook, no_hook
from driver.auth.imds import ImdsCredential
from driver.auth.nmi import NmiCredential
from driver.auth.retry import Monotonic, Sleep
from driver.cloud import Cloud
from driver.config import Settings
from driver.errors import InvalidArgument
from driver.model import AuthMaterial, IdentityMode, VolumeSpec

DEFAULT_IMDS_DEADLINE = 30.0
_NEEDS_AUTH = frozenset({IdentityMode.SERVICE_PRINCIPAL, IdentityMode.WORKLOAD_IDENTITY})
_SHARED_PRINCIPAL = frozenset({IdentityMode.POD_IDENTITY, IdentityMode.WORKLOAD_IDENTITY})


@dataclass
class _Entry:
    credential: KvCredential
    last_used: float


def _cloud_fingerprint(cloud: Cloud) -> tuple[str, ...]:
    # Cloud holds a mapping and is not hashable; these are the fields a token depends on.
    return (
        cloud.authority_host.lower(),
        cloud.keyvault_resource.lower(),
        cloud.imds_endpoint,
        cloud.ca_bundle,
    )


class CredentialProvider:
    def __init__(
        self,
        session: requests.Session,
        settings: Settings,
        clock: Clock = time.time,
        *,
        on_token_request: TokenRequestHook = no_hook,
        imds_deadline: float = DEFAULT_IMDS_DEADLINE,
        idle_ttl: float | None = None,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._session = session
        self._settings = settings
        self._clock = clock
        self._hook = on_token_request
        self._imds_deadline = imds_deadline
        # Opt-in: drop credentials nobody asked for in this long. Off by default, because a
        # caller that keeps a credential (e.g. inside a cached Key Vault client) would otherwise
        # hold an orphan that no longer receives republished service-account tokens.
        self._idle_ttl = idle_ttl
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, tuple[str, ...]], _Entry] = {}
        # Keys the secret digest, so the key (which may appear in debug logs) is no offline
        # oracle for guessing the secret.
        self._pepper = secrets.token_bytes(32)

    # --- identity keys -------------------------------------------------------------------------

    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial) -> str:
        """A string naming exactly one identity (and, for secrets, one secret value)."""
        identity = spec.identity
        mode = identity.mode
        client = identity.client_id.strip().lower()
        tenant = spec.tenant_id.strip().lower()
        if mode is IdentityMode.POD_IDENTITY:
            pod = spec.pod
            return f"{mode}|nmi:{identity.nmi_port}|{pod.namespace}/{pod.name}|{pod.uid}"
        if mode is IdentityMode.SERVICE_PRINCIPAL:
            return f"{mode}|{tenant}|{client}|{self._digest(auth.client_secret)}"
        if mode is IdentityMode.VM_MANAGED_IDENTITY:
            return f"{mode}|{client or 'system'}"
        if mode is IdentityMode.WORKLOAD_IDENTITY:
            pod = spec.pod
            return f"{mode}|{tenant}|{client}|{pod.namespace}/{pod.service_account}"
        raise InvalidArgument(f"unknown identity mode {mode!r}")

    def _digest(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode("utf-8"), hashlib.sha256).hexdigest()

    # --- credentials ---------------------------------------------------------------------------

    def credential_for(self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud) -> KvCredential:
        """The shared credential for the volume's identity (created on first use)."""
        _validate(spec, auth)
        key = (self.identity_key(spec, auth), _cloud_fingerprint(cloud))
        now = self._monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(self._build(spec, auth, cloud), now)
                self._entries[key] = entry
            entry.last_used = now
            idle = self._take_idle(now, keep=key)
        if isinstance(entry.credential, WorkloadIdentityCredential):
            entry.credential.assertion.update(auth.sa_token, auth.sa_token_expiry)
        for credential in idle:
            credential.close()
        return entry.credential

    def forget(self, spec: VolumeSpec, auth: AuthMaterial) -> None:
        """Drop the credentials for this identity (e.g. when its last volume is unpublished)."""
        name = self.identity_key(spec, auth)
        with self._lock:
            gone = [k for k in self._entries if k[0] == name]
            dropped = [self._entries.pop(k).credential for k in gone]
        for credential in dropped:
            credential.close()

    # --- what rotation needs to know of a mode ---------------------------------------------------

    def needs_stored_auth(self, spec: VolumeSpec) -> bool:
        """Rotation cannot authenticate without the secret inputs kept in memory."""
        return spec.identity.mode in _NEEDS_AUTH

    def proves_per_volume(self, spec: VolumeSpec) -> bool:
        """Volumes of one Azure identity share a check, but each must prove it is still theirs."""
        return spec.identity.mode in _SHARED_PRINCIPAL

    def principal(self, spec: VolumeSpec, identity_key: str, credential: TokenCredential) -> str:
        """Who Key Vault sees: volumes of the same Azure identity share one rotation check."""
        if spec.identity.mode is IdentityMode.POD_IDENTITY:
            # NMI tells which identity MIC assigned to the pod once a token was issued.
            client_id = getattr(credential, "client_id", "") or ""
            return f"{spec.tenant_id}/{client_id}" if client_id else identity_key
        if spec.identity.mode is IdentityMode.WORKLOAD_IDENTITY:
            return f"{spec.tenant_id}/{spec.identity.client_id}"
        return identity_key

    def __len__(self) -> int:
        """How many identities have a credential here (one per identity in use)."""
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        with self._lock:
            dropped = [e.credential for e in self._entries.values()]
            self._entries.clear()
        for credential in dropped:
            credential.close()

    def _take_idle(self, now: float, keep: tuple[str, tuple[str, ...]]) -> list[KvCredential]:
        ttl = self._idle_ttl
        if ttl is None:
            return []
        stale = [k for k, e in self._entries.items() if k != keep and now - e.last_used > ttl]
        return [self._entries.pop(k).credential for k in stale]

    def _build(self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud) -> KvCredential:
        identity = spec.identity
        timeout = self._settings.request_timeout
        mode = identity.mode
        if mode is IdentityMode.POD_IDENTITY:
            return NmiCredential(
                session=self._session,
                port=identity.nmi_port,
                pod_namespace=spec.pod.namespace,
                pod_name=spec.pod.name,
                resource=cloud.keyvault_resource,
                deadline=self._settings.nmi_deadline,
                request_timeout=timeout,
                clock=self._clock,
                monotonic=self._monotonic,
                sleep=self._sleep,
                on_token_request=self._hook,
            )
        if mode is IdentityMode.VM_MANAGED_IDENTITY:
            return ImdsCredential(
                session=self._session,
                endpoint=cloud.imds_endpoint,
                client_id=identity.client_id,
                resource=cloud.keyvault_resource,
                deadline=self._imds_deadline,
                request_timeout=timeout,
                clock=self._clock,
                monotonic=self._monotonic,
                sleep=self._sleep,
                on_token_request=self._hook,
            )
        if mode is IdentityMode.SERVICE_PRINCIPAL:
            return ServicePrincipalCredential(
                session=self._session,
                cloud=cloud,
                tenant_id=spec.tenant_id,
                client_id=identity.client_id,
                client_secret=auth.client_secret,
                request_timeout=timeout,
                clock=self._clock,
                on_token_request=self._hook,
            )
        return WorkloadIdentityCredential(
            session=self._session,
            cloud=cloud,
            tenant_id=spec.tenant_id,
            client_id=identity.client_id,
            namespace=spec.pod.namespace,
            service_account=spec.pod.service_account,
            assertion=AssertionHolder(auth.sa_token, auth.sa_token_expiry),
            request_timeout=timeout,
            clock=self._clock,
            on_token_request=self._hook,
        )


def _require(checks: list[tuple[bool, str]], what: str) -> None:
    missing = [name for ok, name in checks if not ok]
    if missing:
        raise InvalidArgument(f"{what} needs {', '.join(missing)}")


def _validate(spec: VolumeSpec, auth: AuthMaterial) -> None:
    """Everything a mode needs is present (checked before any network call)."""
    identity = spec.identity
    mode = identity.mode
    pod = spec.pod
    if mode is IdentityMode.POD_IDENTITY:
        _require(
            [(bool(pod.namespace), "the pod namespace"), (bool(pod.name), "the pod name")],
            "pod identity (usepodidentity)",
        )
        if not 0 < identity.nmi_port < 65536:
            raise InvalidArgument(f"nmiport {identity.nmi_port} is not a TCP port (1-65535)")
    elif mode is IdentityMode.SERVICE_PRINCIPAL:
        _require(
            [
                (bool(spec.tenant_id), "tenantId"),
                (bool(identity.client_id), "clientid in the volume's secret"),
                (bool(auth.client_secret), "clientsecret in the volume's secret"),
            ],
            "service principal authentication",
        )
    elif mode is IdentityMode.WORKLOAD_IDENTITY:
        _require(
            [
                (bool(spec.tenant_id), "tenantId"),
                (bool(identity.client_id), "clientID"),
                (bool(pod.namespace), "the pod namespace"),
                (bool(pod.service_account), "the pod's service account name"),
                (
                    bool(auth.sa_token),
                    "a service-account token for audience api://AzureADTokenExchange "
                    "(set tokenRequests on the CSIDriver)",
                ),
            ],
            "workload identity",
        )


CredentialFactory = Callable[[VolumeSpec, AuthMaterial, Cloud], KvCredential]
