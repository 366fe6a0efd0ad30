"""The devstack's state: identities, vaults (access policies and versioned objects) and pod
assignments. Every read and write goes through one lock, so the servers' threads see a
consistent world."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cryptography import x509

from devstack import crypto

IDENTITY_KINDS = ("service-principal", "user-assigned", "system-assigned", "workload")
CATEGORIES = ("secrets", "keys", "certificates")
SA_AUDIENCE = "api://AzureADTokenExchange"
MAX_SECRET_BYTES = 25 * 1024


class NotFound(LookupError):
    """An object, version, vault or identity that does not exist."""

    def __init__(self, kind: str, name: str, message: str | None = None) -> None:
        super().__init__(message or f"{kind} {name!r} was not found")
        self.kind = kind
        self.name = name


class BadInput(ValueError):
    """A request the world refuses because its content is invalid."""


def new_version() -> str:
    return uuid.uuid4().hex


def now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Federation:
    identity: str
    namespace: str
    service_account: str
    audience: str = SA_AUDIENCE

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


@dataclass
class Identity:
    name: str
    kind: str
    client_id: str
    client_secret: str | None = None
    federations: list[Federation] = field(default_factory=list)


@dataclass(frozen=True)
class PodAssignment:
    namespace: str
    name: str
    identity: str
    delay_seconds: float = 0.0


@dataclass
class Version:
    version: str
    created: int
    updated: int
    enabled: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    managed: bool = False
    not_before: int | None = None
    expires: int | None = None


@dataclass
class SecretVersion(Version):
    value: str = ""
    content_type: str | None = None
    backs_certificate: bool = False  # links the secret to the key of the same name/version


@dataclass
class KeyVersion(Version):
    key: crypto.PrivateKey | None = None
    exportable: bool = False


@dataclass
class CertVersion(Version):
    chain: list[x509.Certificate] = field(default_factory=list)
    key_props: dict[str, Any] = field(default_factory=dict)
    content_type: str = crypto.PKCS12_CONTENT_TYPE
    issuer_name: str = "Self"
    subject: str = ""
    validity_months: int = 12

    @property
    def cert(self) -> x509.Certificate:
        return self.chain[0]


V = TypeVar("V", bound=Version)


@dataclass
class History(Generic[V]):
    """All versions of one object, oldest first; the latest is the last one created."""

    name: str
    versions: list[V] = field(default_factory=list)

    def get(self, version: str | None) -> V:
        if not version:
            return self.versions[-1]
        for v in self.versions:
            if v.version == version.lower():
                return v
        raise LookupError(version)


@dataclass
class Vault:
    name: str
    policies: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # client id -> perms
    secrets: dict[str, History[SecretVersion]] = field(default_factory=dict)
    keys: dict[str, History[KeyVersion]] = field(default_factory=dict)
    certificates: dict[str, History[CertVersion]] = field(default_factory=dict)
    deleted_secrets: dict[str, tuple[History[SecretVersion], int]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # certificate operations
    base_url: str = ""

    def allowed(self, client_id: str, category: str, permission: str) -> bool:
        perms = self.policies.get(client_id.lower(), {}).get(category, set())
        return "all" in perms or permission in perms


def _append(store: dict[str, History[V]], name: str, version: V) -> V:
    history = store.setdefault(name.lower(), History(name))
    history.versions.append(version)
    return version


class World:
    def __init__(
        self,
        tenant_id: str,
        admin: str,
        token_lifetime: int = 3600,
    ) -> None:
        self.tenant_id = tenant_id
        self.admin = admin
        self.token_lifetime = token_lifetime
        self.identities: dict[str, Identity] = {}
        self.vaults: dict[str, Vault] = {}
        self.pods: dict[str, PodAssignment] = {}
        self.started = time.monotonic()
        self._lock = threading.RLock()

    @contextmanager
    def locked(self) -> Iterator[World]:
        with self._lock:
            yield self

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

    def _version(
        self, history: History[V], kind: str, name: str, version: str | None
    ) -> tuple[str, V]:
        """(the object's stored name, the version asked for or the latest)."""
        try:
            with self._lock:
                return history.name, history.get(version)
        except LookupError:
            raise NotFound(kind, f"{name}/{version}") from None

    def _history(self, collection: dict[str, History[V]], kind: str, name: str) -> History[V]:
        with self._lock:
            history = collection.get(name.lower())
        if history is None:
            raise NotFound(kind, name)
        return history

    def vault(self, name: str) -> Vault:
        with self._lock:
            found = self.vaults.get(name.lower())
        if found is None:
            raise NotFound("vault", name)
        return found

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

    # --- secrets ---------------------------------------------------------------------------

    def set_secret(
        self,
        vault: str,
        name: str,
        value: str,
        content_type: str | None = None,
        *,
        enabled: bool = True,
        tags: dict[str, str] | None = None,
        version: str | None = None,
        managed: bool = False,
        backs_certificate: bool = False,
    ) -> SecretVersion:
        if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise BadInput(
                f"the secret value is {len(value.encode('utf-8'))} bytes; "
                f"the maximum is {MAX_SECRET_BYTES} bytes"
            )
        t = now()
        entry = SecretVersion(
            version=version or new_version(),
            created=t,
            updated=t,
            enabled=enabled,
            tags=dict(tags or {}),
            managed=managed,
            value=value,
            content_type=content_type,
            backs_certificate=backs_certificate,
        )
        with self._lock:
            target = self.vault(vault)
            target.deleted_secrets.pop(name.lower(), None)
            return _append(target.secrets, name, entry)

    def secret(
        self, vault: str, name: str, version: str | None = None
    ) -> tuple[str, SecretVersion]:
        return self._version(self.secret_history(vault, name), "secret", name, version)

    def secret_history(self, vault: str, name: str) -> History[SecretVersion]:
        return self._history(self.vault(vault).secrets, "secret", name)

    def update_secret(
        self,
        vault: str,
        name: str,
        version: str | None,
        *,
        enabled: bool | None = None,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> tuple[str, SecretVersion]:
        with self._lock:
            display, entry = self.secret(vault, name, version)
            if enabled is not None:
                entry.enabled = enabled
            if content_type is not None:
                entry.content_type = content_type
            if tags is not None:
                entry.tags = dict(tags)
            entry.updated = now()
            return display, entry

    def delete_secret(self, vault: str, name: str) -> History[SecretVersion]:
        """Remove a secret; it stays readable as a deleted secret until purged or recreated."""
        with self._lock:
            target = self.vault(vault)
            history = target.secrets.pop(name.lower(), None)
            if history is None:
                raise NotFound("secret", name)
            target.deleted_secrets[name.lower()] = (history, now())
        return history

    def deleted_secret(self, vault: str, name: str) -> tuple[History[SecretVersion], int]:
        with self._lock:
            found = self.vault(vault).deleted_secrets.get(name.lower())
        if found is None:
            raise NotFound("deleted secret", name)
        return found

    # --- keys ------------------------------------------------------------------------------

    def add_key(
        self,
        vault: str,
        name: str,
        key: crypto.PrivateKey,
        *,
        version: str | None = None,
        managed: bool = False,
        exportable: bool = False,
        enabled: bool = True,
        tags: dict[str, str] | None = None,
    ) -> KeyVersion:
        t = now()
        entry = KeyVersion(
            version=version or new_version(),
            created=t,
            updated=t,
            enabled=enabled,
            tags=dict(tags or {}),
            managed=managed,
            key=key,
            exportable=exportable,
        )
        with self._lock:
            return _append(self.vault(vault).keys, name, entry)

    def key(self, vault: str, name: str, version: str | None = None) -> tuple[str, KeyVersion]:
        return self._version(self.key_history(vault, name), "key", name, version)

    def key_history(self, vault: str, name: str) -> History[KeyVersion]:
        return self._history(self.vault(vault).keys, "key", name)

    # --- certificates ----------------------------------------------------------------------

    def add_certificate(
        self,
        vault: str,
        name: str,
        key: crypto.PrivateKey,
        chain: list[x509.Certificate],
        content_type: str,
        *,
        issuer_name: str = "Self",
        exportable: bool = True,
        enabled: bool = True,
        tags: dict[str, str] | None = None,
        validity_months: int = 12,
    ) -> CertVersion:
        """Store a certificate version with its backing key and secret, all three sharing the
        version id, as Key Vault links them."""
        if content_type not in (crypto.PEM_CONTENT_TYPE, crypto.PKCS12_CONTENT_TYPE):
            raise BadInput(
                f"certificate content type {content_type!r} is not supported "
                f"({crypto.PEM_CONTENT_TYPE}, {crypto.PKCS12_CONTENT_TYPE})"
            )
        version = new_version()
        secret_value = crypto.backing_secret_value(content_type, key, chain)
        t = now()
        nbf = int(chain[0].not_valid_before_utc.timestamp())
        exp = int(chain[0].not_valid_after_utc.timestamp())
        entry = CertVersion(
            version=version,
            created=t,
            updated=t,
            enabled=enabled,
            tags=dict(tags or {}),
            chain=list(chain),
            key_props={**crypto.key_description(key), "exportable": exportable, "reuse_key": False},
            content_type=content_type,
            issuer_name=issuer_name,
            subject=chain[0].subject.rfc4514_string(),
            validity_months=validity_months,
            not_before=nbf,
            expires=exp,
        )
        with self._lock:
            self.vault(vault)  # fail before creating anything
            key_entry = self.add_key(
                vault, name, key, version=version, managed=True, exportable=exportable
            )
            secret_entry = self.set_secret(
                vault,
                name,
                secret_value,
                content_type,
                version=version,
                managed=True,
                backs_certificate=True,
            )
            for linked in (key_entry, secret_entry):
                linked.not_before, linked.expires = nbf, exp
            return _append(self.vault(vault).certificates, name, entry)

    def certificate(
        self, vault: str, name: str, version: str | None = None
    ) -> tuple[str, CertVersion]:
        return self._version(self.certificate_history(vault, name), "certificate", name, version)

    def certificate_history(self, vault: str, name: str) -> History[CertVersion]:
        return self._history(self.vault(vault).certificates, "certificate", name)
