"""The devstack's state: identities, vaults (access policies and versioned objects) and pod
assignments. Every read and write goes through one lock, so the servers' threads see a
consistent world. The data types live in `devstack.model` (re-exported here), the versioned
objects' operations in `devstack.stores`."""

from __future__ import annotations

import time

from devstack.arm.compute import Compute
from devstack.model import (
    CATEGORIES,
    IDENTITY_KINDS,
    MAX_SECRET_BYTES,
    SA_AUDIENCE,
    BadInput,
    CertVersion,
    Federation,
    History,
    Identity,
    KeyVersion,
    NotFound,
    PodAssignment,
    SecretVersion,
    Vault,
    Version,
    new_version,
    now,
)
from devstack.stores import CertificateStore

__all__ = [
    "CATEGORIES",
    "IDENTITY_KINDS",
    "MAX_SECRET_BYTES",
    "SA_AUDIENCE",
    "BadInput",
    "CertVersion",
    "Federation",
    "History",
    "Identity",
    "KeyVersion",
    "NotFound",
    "PodAssignment",
    "SecretVersion",
    "Vault",
    "Version",
    "World",
    "new_version",
    "now",
]


class World(CertificateStore):
    """The whole devstack state: the tenant, its identities and their federations, the vaults
    with their access policies and objects, the pods NMI knows, and the VMs and scale sets
    (`compute`) with the identities attached to them."""

    def __init__(
        self,
        tenant_id: str,
        admin: str,
        token_lifetime: int = 3600,
    ) -> None:
        super().__init__()
        self.tenant_id = tenant_id
        self.admin = admin
        self.token_lifetime = token_lifetime
        self.identities: dict[str, Identity] = {}
        self.pods: dict[str, PodAssignment] = {}
        self.started = time.monotonic()
        # VMs and scale sets (devstack/arm): the seed replaces this empty one.
        self.compute = Compute(self)

    # --- identities and access -------------------------------------------------------------

    def add_identity(self, identity: Identity) -> None:
        if identity.kind not in IDENTITY_KINDS:
            raise BadInput(f"identity {identity.name!r}: unknown kind {identity.kind!r}")
        with self._lock:
            self.identities[identity.name] = identity

    def identity(self, name: str) -> Identity:
        with self._lock:
            found = self.identities.get(name)
        if found is None:
            raise NotFound("identity", name)
        return found

    def by_client_id(self, client_id: str) -> Identity | None:
        with self._lock:
            for identity in self.identities.values():
                if identity.client_id.lower() == client_id.lower():
                    return identity
        return None

    def federations(self) -> list[Federation]:
        with self._lock:
            return [f for i in self.identities.values() for f in i.federations]

    def set_policy(self, vault: str, identity: str, perms: dict[str, list[str]]) -> None:
        target = self.identity(identity)
        unknown = set(perms) - set(CATEGORIES)
        if unknown:
            raise BadInput(f"unknown permission categories: {', '.join(sorted(unknown))}")
        with self._lock:
            self.vault(vault).policies[target.client_id.lower()] = {
                c: {p.lower() for p in perms.get(c, [])} for c in CATEGORIES
            }

    def revoke(self, identity: str) -> None:
        target = self.identity(identity)
        with self._lock:
            for vault in self.vaults.values():
                vault.policies.pop(target.client_id.lower(), None)

    def allowed(self, vault: str, client_id: str, category: str, permission: str) -> bool:
        with self._lock:
            return self.vault(vault).allowed(client_id, category, permission)

    def pod(self, namespace: str, name: str) -> PodAssignment | None:
        with self._lock:
            return self.pods.get(f"{namespace}/{name}")

    def seconds_since_start(self) -> float:
        return time.monotonic() - self.started
