"""Picks up an operator's changes to the state store while the daemon runs.

Deleting `<state-dir>/volumes/<id>.json` stops the daemon managing that volume (no more rotation;
its files stay until kubelet unpublishes it); editing a record (say, pinning a version) is
reloaded. The daemon's own writes produce the same events and are recognised as no change.
"""

from __future__ import annotations

import logging
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from driver.engine import Engine

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_deleted(self, event: FileSystemEvent) -> None:
        path = Path(str(event.src_path))
        if path.suffix != ".json" or path.name.startswith("."):
            return
        for record in self.engine.store.all():
            if self.engine.store.path_of(record.volume_id) == path:
                self.engine.forget(record, "its state record was deleted")

    def on_modified(self, event: FileSystemEvent) -> None:
        self._reload(Path(str(event.src_path)))

    def on_created(self, event: FileSystemEvent) -> None:
        self._reload(Path(str(event.src_path)))

    def on_moved(self, event: FileSystemEvent) -> None:
        self._reload(Path(str(event.dest_path)))

    def _reload(self, path: Path) -> None:
        if event_is_record(path):
            try:
                record = self.engine.store.read(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable edited record %s: %s", path.name, exc)
                return
            self.engine.reload(record)


def event_is_record(path: Path) -> bool:
    return path.suffix == ".json" and not path.name.startswith(".") and path.exists()


class StateWatcher:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self) -> None:
        observer = Observer()
        observer.schedule(_Handler(self._engine), str(self._engine.store.dir), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
