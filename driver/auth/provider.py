"""One credential per identity, shared by every volume that authenticates as it.

The cache key is the identity itself, never something coarser: a pod must never be handed a
token obtained for another pod, and a volume with a wrong client secret must never be served a
token obtained with the right one.

Everything that differs between identity modes (validation, building, keying, what rotation
needs) lives in the mode's module under `driver.auth.modes`; this class only shares and frees.
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

from azcommon.cloud import Cloud
from azcommon.credentials.base import Clock, KvCredential, TokenRequestHook, no_hook
from azcommon.credentials.polling import Monotonic, Sleep
from driver.auth.modes.base import BuildContext
from driver.auth.modes.registry import module_for
from driver.auth.vm_policy import VmIdentityPolicy
from driver.config import Settings
from driver.model import AuthMaterial, VolumeSpec

DEFAULT_IMDS_DEADLINE = 30.0


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
    """Credentials shared per identity, built and keyed by the identity mode's module."""

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
        vm_policy: VmIdentityPolicy | None = None,
        azure_session: requests.Session | None = None,
    ) -> None:
        self._context = BuildContext(
            session=session,
            settings=settings,
            clock=clock,
            monotonic=monotonic,
            sleep=sleep,
            on_token_request=on_token_request,
            imds_deadline=imds_deadline,
            vm_policy=vm_policy,
            azure_session=azure_session,
        )
        # Opt-in: drop credentials nobody asked for in this long. Off by default, because a
        # caller that keeps a credential (e.g. inside a cached Key Vault client) would otherwise
        # hold an orphan that no longer receives republished service-account tokens.
        self._idle_ttl = idle_ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, tuple[str, ...]], _Entry] = {}
        # Keys the secret digest, so the key (which may appear in debug logs) is no offline
        # oracle for guessing the secret.
        self._pepper = secrets.token_bytes(32)

    # --- what each identity mode says -----------------------------------------------------------

    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial) -> str:
        """A string naming exactly one identity (and, for secrets, one secret value)."""
        return module_for(spec.identity.mode).identity_key(spec, auth, self._digest)

    def needs_stored_auth(self, spec: VolumeSpec) -> bool:
        """Rotation cannot authenticate this volume without its secret inputs kept in memory."""
        return module_for(spec.identity.mode).needs_stored_auth

    def proves_per_volume(self, spec: VolumeSpec) -> bool:
        """Volumes of one Azure identity share a rotation check, but each must get its own token
        to prove the identity is still its own."""
        return module_for(spec.identity.mode).proves_per_volume

    def principal(self, spec: VolumeSpec, identity_key: str, credential: TokenCredential) -> str:
        """Who Key Vault sees: volumes of the same Azure identity share one rotation check."""
        return module_for(spec.identity.mode).principal(spec, identity_key, credential)

    def _digest(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode("utf-8"), hashlib.sha256).hexdigest()

    # --- credentials ---------------------------------------------------------------------------

    def credential_for(self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud) -> KvCredential:
        """The shared credential for the volume's identity (created on first use)."""
        module = module_for(spec.identity.mode)
        module.validate(spec, auth)  # the parser ran it too; specs may also come from elsewhere
        # Before the cache: a credential built for an allowed volume is not one for every volume.
        module.authorize(spec, self._context)
        key = (self.identity_key(spec, auth), _cloud_fingerprint(cloud))
        now = self._monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(module.build(spec, auth, cloud, self._context), now)
                self._entries[key] = entry
            entry.last_used = now
            idle = self._take_idle(now, keep=key)
        module.refresh(entry.credential, auth)
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


CredentialFactory = Callable[[VolumeSpec, AuthMaterial, Cloud], KvCredential]
