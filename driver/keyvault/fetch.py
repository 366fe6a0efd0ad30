"""Fetching objects from Key Vault with the official SDK clients.

Clients are cached per (vault, identity) so the Key Vault challenge handshake and TLS connections
are paid once. Every request goes through `driver.keyvault.calls`: SDK retries are off and
replaced by one policy there (retries with backoff honouring Retry-After, and a per-vault gate
and client-side budget, `VaultGate`, shared by publish and rotation).

Optional objects (`optional: true`) that are missing (404) or disabled come back as no versions
(`[]`) instead of an error; every other failure of theirs still fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import TypeVar

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport

from azcommon.errors import NotFound
from driver.keyvault.calls import (
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_WINDOW,
    ObjectDisabled,
    VaultCalls,
    VaultGate,
    VaultRef,
    describe,
)
from driver.keyvault.objects import Fetched
from driver.keyvault.types import selection
from driver.keyvault.types.base import ObjectKind, VaultObjects
from driver.keyvault.types.registry import kind_of
from driver.metrics import Metrics
from driver.model import ObjectSpec

# Kept importable from here, where callers have always found them.
__all__ = [
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_RATE_WINDOW",
    "KeyVaultFetcher",
    "ObjectDisabled",
    "VaultGate",
    "VaultRef",
]

T = TypeVar("T")


class KeyVaultFetcher:
    """Fetches objects with the official SDK clients, every request sent through `VaultCalls`."""

    def __init__(
        self,
        transport: HttpTransport,  # type: ignore[type-arg]
        executor: Executor,
        metrics: Metrics,
        *,
        attempts: int = 5,
        deadline: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        rate_window: float = DEFAULT_RATE_WINDOW,
    ) -> None:
        self._transport = transport
        self._executor = executor
        self._metrics = metrics
        self._calls = VaultCalls(
            metrics,
            attempts=attempts,
            deadline=deadline,
            clock=clock,
            sleep=sleep,
            rate_limit=rate_limit,
            rate_window=rate_window,
        )
        self.gate = self._calls.gate
        # One SDK client per (object type, vault, identity).
        self._clients: dict[tuple[str, str, str], VaultObjects] = {}
        self._clients_lock = threading.Lock()

    # -- public ---------------------------------------------------------------------------------

    def fetch_all(
        self,
        jobs: Sequence[tuple[VaultRef, ObjectSpec]],
        credential: TokenCredential,
        identity_key: str,
    ) -> list[list[Fetched]]:
        """Every object's versions (one, or the history newest first; `[]` for a missing
        optional object), concurrently across objects and vaults, in order.

        All-or-nothing: the first failure (in object order) is raised once all have finished.
        """
        return self.gather(
            [
                self._executor.submit(self.fetch, vault, obj, credential, identity_key)
                for vault, obj in jobs
            ]
        )

    def list_all(
        self,
        jobs: Sequence[tuple[VaultRef, ObjectSpec]],
        credential: TokenCredential,
        identity_key: str,
    ) -> list[list[str]]:
        """The names each selecting entry selects, concurrently, in order (all-or-nothing)."""
        return self.gather(
            [
                self._executor.submit(self.select, vault, obj, credential, identity_key)
                for vault, obj in jobs
            ]
        )

    @staticmethod
    def gather(futures: Sequence[Future[T]]) -> list[T]:
        results: list[T] = []
        first_error: BaseException | None = None
        for fut in futures:
            try:
                results.append(fut.result())
            except BaseException as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return results

    def fetch(
        self, vault: VaultRef, obj: ObjectSpec, credential: TokenCredential, identity_key: str
    ) -> list[Fetched]:
        """One object: its pinned or latest version, or its newest enabled versions; `[]` when
        it is optional and missing or disabled."""
        try:
            return self._fetch(vault, obj, credential, identity_key)
        except (NotFound, ObjectDisabled):
            if not obj.optional:
                raise
            self._metrics.optional_missing.labels(vault.name).inc()
            return []

    def select(
        self, vault: VaultRef, entry: ObjectSpec, credential: TokenCredential, identity_key: str
    ) -> list[str]:
        """The names a selecting entry selects now (one listing of the vault)."""
        kind = kind_of(entry.type)
        client = self._objects(kind, vault, credential, identity_key)
        listing = self._calls.call(vault, entry, "", kind.names_operation, client.names, credential)
        names = selection.select(entry, listing, vault.name)
        self._metrics.selected_objects.labels(vault.name).observe(len(names))
        return names

    def _fetch(
        self, vault: VaultRef, obj: ObjectSpec, credential: TokenCredential, identity_key: str
    ) -> list[Fetched]:
        if obj.version_history:
            versions = self._history_versions(vault, obj, credential, identity_key)
            return [self._get(vault, obj, v, credential, identity_key) for v in versions]
        return [self._get(vault, obj, obj.version, credential, identity_key)]

    def forget(self, identity_key: str) -> None:
        """Drop the clients (and so the credential they hold) of an identity no longer used."""
        with self._clients_lock:
            for key in [k for k in self._clients if k[2] == identity_key]:
                del self._clients[key]

    # -- internals ------------------------------------------------------------------------------

    def _objects(
        self, kind: ObjectKind, vault: VaultRef, cred: TokenCredential, key: str
    ) -> VaultObjects:
        ck = (kind.type.value, vault.url, key)
        with self._clients_lock:
            client = self._clients.get(ck)
            if client is None:
                client = kind.open(vault.url, cred, self._transport)
                self._clients[ck] = client
            return client

    def _get(
        self,
        vault: VaultRef,
        obj: ObjectSpec,
        version: str,
        cred: TokenCredential,
        key: str,
    ) -> Fetched:
        kind = kind_of(obj.type)
        client = self._objects(kind, vault, cred, key)
        return self._calls.call(
            vault, obj, version, kind.get_operation, lambda: client.get(obj.name, version), cred
        )

    def _history_versions(
        self, vault: VaultRef, obj: ObjectSpec, cred: TokenCredential, key: str
    ) -> list[str]:
        kind = kind_of(obj.type)
        client = self._objects(kind, vault, cred, key)
        props = self._calls.call(
            vault, obj, "", kind.list_operation, lambda: client.versions(obj.name), cred
        )
        # Newest first; creation times have one-second resolution, so ties keep listing order.
        listed = [p for p in props if p.enabled is not False and p.version]
        created = [p.created_on.timestamp() if p.created_on else 0.0 for p in listed]
        order = sorted(range(len(listed)), key=lambda i: (created[i], i), reverse=True)
        enabled = [listed[i] for i in order]
        if obj.version:
            # History counts back from the pinned version.
            names = [p.version for p in enabled]
            if obj.version not in names:
                raise NotFound(
                    describe(vault, obj, obj.version) + ": version not found or disabled"
                )
            enabled = enabled[names.index(obj.version) :]
        if not enabled:
            raise NotFound(describe(vault, obj, "") + ": no enabled versions")
        return [p.version for p in enabled[: obj.version_history]]
