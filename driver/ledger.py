"""The one owner of what the node plugin knows about its volumes.

The ledger holds the state store (records, no secrets), the secret inputs rotation needs to
authenticate without kubelet (memory, plus root-only files when the state dir is on a tmpfs),
per-volume exclusion, and dropping a volume. Publish, unpublish, restore, rotation and the
state-dir watcher all go through it; nothing else touches the stores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from driver.errors import Aborted
from driver.metrics import Metrics
from driver.model import AuthMaterial, VolumeSpec
from driver.volumes import AuthStore, VolumeRecord, VolumeStore

# Called when the last volume of an identity is dropped, to free its credential and clients.
Release = Callable[[VolumeSpec, AuthMaterial, str], None]


class Ledger:
    """Volume records, their rotation credentials and who is working on which volume."""

    def __init__(self, store: VolumeStore, auth_store: AuthStore, metrics: Metrics) -> None:
        self._store = store
        self._auth_store = auth_store
        self._metrics = metrics
        self._auth: dict[str, AuthMaterial] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    # -- loading --------------------------------------------------------------------------------

    def open(self) -> list[str]:
        """Load records and stored credentials; returns the problems seen (bad records skipped)."""
        problems = self._store.open()
        self._auth = self._auth_store.open()
        self._update_gauge()
        return problems

    @property
    def records_dir(self) -> Path:
        return self._store.dir

    def ready(self) -> bool:
        return self._store.dir.is_dir()

    # -- reading --------------------------------------------------------------------------------

    def get(self, volume_id: str) -> VolumeRecord | None:
        return self._store.get(volume_id)

    def find(self, volume_id: str, target: Path) -> VolumeRecord | None:
        """The record of a volume, by id or else by target path (kubelet may send either)."""
        return self._store.get(volume_id) or self._store.find_by_target(str(target))

    def all(self) -> list[VolumeRecord]:
        return self._store.all()

    def __len__(self) -> int:
        return len(self._store)

    def record_path(self, volume_id: str) -> Path:
        return self._store.path_of(volume_id)

    def auth_of(self, volume_id: str) -> AuthMaterial:
        return self._auth.get(volume_id, AuthMaterial())

    def identity_in_use(self, identity_key: str) -> bool:
        return any(r.identity_key == identity_key for r in self._store.all())

    def is_current(self, record: VolumeRecord) -> bool:
        """Whether `record` is still the one on file (no publish or unpublish replaced it)."""
        return self._store.get(record.volume_id) is record

    def require_current(self, record: VolumeRecord) -> None:
        """Rotation works on the records it read at the start of a cycle; refuse to act on one
        that a publish or unpublish has replaced or removed since."""
        if not self.is_current(record):
            raise Aborted(f"volume {record.volume_id} changed during the rotation check")

    # -- writing --------------------------------------------------------------------------------

    @contextmanager
    def exclusive(self, volume_id: str) -> Iterator[None]:
        """One operation per volume at a time; a concurrent one is refused (ABORTED, retried)."""
        with self._lock:
            if volume_id in self._busy:
                raise Aborted(f"volume {volume_id}: another operation is in progress")
            self._busy.add(volume_id)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(volume_id)

    def save(self, record: VolumeRecord) -> None:
        self._store.save(record)
        self._update_gauge()

    def remember_auth(self, volume_id: str, auth: AuthMaterial) -> None:
        """Keep what rotation needs to authenticate later (memory; tmpfs-only file)."""
        if auth and self._auth.get(volume_id) != auth:
            self._auth[volume_id] = auth
            self._auth_store.save(volume_id, auth)

    def drop(self, record: VolumeRecord, release: Release) -> None:
        """Forget a volume; when it was its identity's last, `release` frees the credential."""
        self._store.delete(record.volume_id)
        auth = self.forget_auth(record.volume_id)
        if not self.identity_in_use(record.identity_key):
            release(record.spec, auth, record.identity_key)
        self._update_gauge()

    def forget_auth(self, volume_id: str) -> AuthMaterial:
        self._auth_store.delete(volume_id)
        return self._auth.pop(volume_id, AuthMaterial())

    def _update_gauge(self) -> None:
        counts: dict[str, int] = {"csi": 0, "flexvolume": 0}
        for record in self._store.all():
            counts[record.source] = counts.get(record.source, 0) + 1
        for source, count in counts.items():
            self._metrics.volumes.labels(source).set(count)
