"""Picks up an operator's deletion of a state record while the daemon runs.

Deleting `<state-dir>/volumes/<id>-<digest>.json` stops the daemon managing that volume: no more rotation;
its files stay until kubelet unpublishes it. The daemon's own deletions produce the same events and
find nothing left to forget.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from azcommon.errors import Aborted
from driver.ledger import Ledger
from driver.upkeep import Upkeep

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(self, ledger: Ledger, upkeep: Upkeep) -> None:
        self.ledger = ledger
        self.upkeep = upkeep

    def on_deleted(self, event: FileSystemEvent) -> None:
        path = Path(str(event.src_path))
        if path.suffix != ".json" or path.exists():
            return  # not a record, or already written again (a republish raced the event)
        for record in self.ledger.all():
            if self.ledger.record_path(record) != path:
                continue
            try:
                with self.ledger.exclusive(record.volume_id, record.target_path):
                    if not path.exists() and self.ledger.is_current(record):
                        self.upkeep.forget(record, "its state record was deleted")
            except Aborted:
                log.info("record of volume %s deleted during an operation: kept", record.volume_id)


class StateWatcher:
    """Watches the records directory for deletions (an inotify watch: nothing is polled)."""

    def __init__(self, ledger: Ledger, upkeep: Upkeep) -> None:
        self._ledger = ledger
        self._upkeep = upkeep
        self._observer: Any = None

    def start(self) -> None:
        observer = Observer()
        observer.schedule(
            _Handler(self._ledger, self._upkeep), str(self._ledger.records_dir), recursive=False
        )
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
