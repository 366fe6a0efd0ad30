"""The devstack's data model: identities, pod assignments, vaults and the versioned objects in
them, and the two errors the world raises. Plain data; `devstack.world.World` owns and locks it."""

from __future__ import annotations

import time
import uuid
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
    # Managed identities only: the ARM resource id (user-assigned) and the object id ARM reports
    # as principalId; filled in by the seed (devstack/arm/seed.py) when not given.
    resource_id: str = ""
    principal_id: str = ""


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
