"""The versioned objects of the world's vaults, in layers over one lock: `VaultStore` finds a
vault and an object's versions; `SecretStore`, `KeyStore` and `CertificateStore` add, change
and read each family (a certificate also writes its backing key and secret, as Key Vault links
them). `devstack.world.World` stacks identities and access on top."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from cryptography import x509

from devstack import crypto
from devstack.model import (
    MAX_SECRET_BYTES,
    BadInput,
    CertVersion,
    History,
    KeyVersion,
    NotFound,
    SecretVersion,
    V,
    Vault,
    new_version,
    now,
)


def _append(store: dict[str, History[V]], name: str, version: V) -> V:
    history = store.setdefault(name.lower(), History(name))
    history.versions.append(version)
    return version


class VaultStore:
    """The vaults and the lock that every read and write of the world holds (re-entrant, so
    one operation can be built from others)."""

    def __init__(self) -> None:
        self.vaults: dict[str, Vault] = {}
        self._lock = threading.RLock()

    @contextmanager
    def locked(self) -> Iterator[Self]:
        with self._lock:
            yield self

    def vault(self, name: str) -> Vault:
        with self._lock:
            found = self.vaults.get(name.lower())
        if found is None:
            raise NotFound("vault", name)
        return found

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


class SecretStore(VaultStore):
    """Secrets: versions, updates, deletion (kept as a deleted secret until recreated)."""

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


class KeyStore(VaultStore):
    """Keys: versions of one private key each."""

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


class CertificateStore(SecretStore, KeyStore):
    """Certificates, each version with its backing key and secret."""

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
