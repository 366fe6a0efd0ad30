"""A stand-in at the engine boundary: records what reaches it and raises on demand. The bridge
is the thing under test; the end-to-end tests put the real engine behind it."""

from __future__ import annotations

import threading
from pathlib import Path

from driver.contract import PublishRequest


class RecordingEngine:
    def __init__(self) -> None:
        self.published: list[PublishRequest] = []
        self.unpublished: list[tuple[str, Path]] = []
        self.fail_with: BaseException | None = None
        self._lock = threading.Lock()

    def publish(self, request: PublishRequest) -> object:
        with self._lock:
            self.published.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        return None

    def unpublish(self, volume_id: str, target_path: Path) -> None:
        with self._lock:
            self.unpublished.append((volume_id, target_path))
        if self.fail_with is not None:
            raise self.fail_with
