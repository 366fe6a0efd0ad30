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

from azcommon.errors import Aborted
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

    def at(self, target: Path | str) -> VolumeRecord | None:
        """The volume published at `target` (records are keyed by target path)."""
        return self._store.at(str(target))

    def all(self) -> list[VolumeRecord]:
        return self._store.all()

    def __len__(self) -> int:
        return len(self._store)

    def record_path(self, record: VolumeRecord) -> Path:
        return self._store.path_of(record)

    def auth_of(self, record: VolumeRecord) -> AuthMaterial:
        return self._auth.get(record.target_path, AuthMaterial())

    def identity_in_use(self, identity_key: str) -> bool:
        return any(r.identity_key == identity_key for r in self._store.all())

    def is_current(self, record: VolumeRecord) -> bool:
        """Whether `record` is still the one on file (no publish or unpublish replaced it)."""
        return self._store.at(record.target_path) is record

    def require_current(self, record: VolumeRecord) -> None:
        """Rotation works on the records it read at the start of a cycle; refuse to act on one
        that a publish or unpublish has replaced or removed since."""
        if not self.is_current(record):
            raise Aborted(f"volume {record.volume_id} changed during the rotation check")

    # -- writing --------------------------------------------------------------------------------

    @contextmanager
    def exclusive(self, volume_id: str, target: Path | str) -> Iterator[None]:
        """One operation per target at a time; a concurrent one is refused (ABORTED, retried)."""
        key = str(target)
        with self._lock:
            if key in self._busy:
                raise Aborted(f"volume {volume_id}: another operation is in progress")
            self._busy.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(key)

    def save(self, record: VolumeRecord) -> None:
        self._store.save(record)
        self._update_gauge()

    def remember_auth(self, record: VolumeRecord, auth: AuthMaterial) -> None:
        """Keep what rotation needs to authenticate later (memory; tmpfs-only file)."""
        key = record.target_path
        if auth and self._auth.get(key) != auth:
            self._auth[key] = auth
            self._auth_store.save(key, auth)

    def drop(self, record: VolumeRecord, release: Release) -> None:
        """Forget a volume; when it was its identity's last, `release` frees the credential."""
        self._store.delete(record)
        auth = self.forget_auth(record.target_path)
        if not self.identity_in_use(record.identity_key):
            release(record.spec, auth, record.identity_key)
        self._update_gauge()

    def forget_auth(self, target: Path | str) -> AuthMaterial:
        self._auth_store.delete(str(target))
        return self._auth.pop(str(target), AuthMaterial())

    def _update_gauge(self) -> None:
        counts: dict[str, int] = {"csi": 0, "flexvolume": 0}
        for record in self._store.all():
            counts[record.source] = counts.get(record.source, 0) + 1
        for source, count in counts.items():
            self._metrics.volumes.labels(source).set(count)
