"""What one Key Vault object type says about itself.

A type is one module in this package holding one `ObjectKind`: which SDK client reads it, how
one version is fetched and its versions listed, which file options apply, and how a fetched
version becomes file content. `registry.py` lists them; nothing else branches on the type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport

from azcommon.errors import Internal
from driver.keyvault.objects import Fetched
from driver.model import ObjectSpec, ObjectType


@dataclass(frozen=True)
class VersionInfo:
    """One listed version of an object (from the SDK's properties)."""

    version: str
    enabled: bool | None
    created_on: datetime | None


@dataclass(frozen=True)
class Listed:
    """One object of a vault listing (names and properties; never values)."""

    name: str
    enabled: bool | None
    tags: dict[str, str]
    managed: bool = False  # a secret that backs a certificate (listed twice otherwise)


class VaultObjects(Protocol):
    """One SDK client, bound to one vault and one credential, reading one object type."""

    def get(self, name: str, version: str) -> Fetched:
        """The version (`""` for the latest) of the named object."""
        ...

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of the named object, as Key Vault lists them."""
        ...

    def names(self) -> list[Listed]:
        """Every object of this type in the vault (the list API, all pages)."""
        ...


class ObjectKind(ABC):
    """One object type: fetch, list versions, render."""

    type: ObjectType
    get_operation: str  # metric label of a fetch, e.g. "secret.get"
    list_operation: str  # metric label of a version listing, e.g. "secret.versions"
    names_operation: str  # metric label of a vault listing, e.g. "secret.list"
    # Whether objectFormat / objectEncoding apply (the parser rejects them otherwise).
    takes_options: bool = False

    @abstractmethod
    def open(
        self,
        vault_url: str,
        credential: TokenCredential,
        transport: HttpTransport,  # type: ignore[type-arg]
    ) -> VaultObjects:
        """A client for this type in the vault, with retries left to the caller."""

    @abstractmethod
    def render(self, obj: ObjectSpec, value: Fetched) -> bytes:
        """The file content for one fetched version of `obj`."""


def client_options(transport: HttpTransport) -> dict[str, object]:  # type: ignore[type-arg]
    # Our one retry policy replaces the SDK's; the devstack's challenge names its own resource.
    return {"transport": transport, "verify_challenge_resource": False, "retry_total": 0}


def where(obj: ObjectSpec, version: str) -> str:
    """How messages name one version of an object."""
    vault = f" in vault {obj.vault!r}" if obj.vault else ""
    return f"{obj.type.value} {obj.name!r} version {version or 'latest'!r}{vault}"


def mismatch(obj: ObjectSpec, value: Fetched) -> Internal:
    return Internal(
        f"{obj.type.value} {obj.name!r}: fetched a {type(value).__name__}, "
        f"which does not match the object type"
    )
