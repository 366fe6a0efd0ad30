"""Kubernetes Events for what an operator should see in `kubectl describe`, deduplicated.

`EventRecorder.record(ref, reason, message)` never blocks the caller and never raises: events go
to a bounded queue that one worker thread drains. The same (object, type, reason, message) seen
again within `window` seconds is aggregated: the existing Event's `count` and `lastTimestamp` are
patched instead of creating another object, the way kubelet and the controllers do. Messages are
the caller's and must carry no secret (the recorder cannot tell).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from lightkube import ApiError, Client
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"


@dataclass(frozen=True)
class Ref:
    """The object an event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""


@dataclass
class _Seen:
    name: str
    count: int
    last: float


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class EventRecorder:
    """Records Events as `component` on `host`; see the module docstring for the aggregation."""

    def __init__(
        self,
        client: Client,
        component: str,
        host: str = "",
        *,
        window: float = 600.0,
        remember: int = 1024,
        queue_size: int = 256,
    ) -> None:
        self._client = client
        self._component = component
        self._host = host
        self._window = window
        self._remember = remember
        self._seen: OrderedDict[tuple[Ref, str, str, str], _Seen] = OrderedDict()
        self._queue: queue.Queue[tuple[Ref, str, str, str] | None] = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._drain, name=f"events-{component}", daemon=True)
        self._thread.start()
        self.dropped = 0

    def record(self, ref: Ref, reason: str, message: str, type: str = NORMAL) -> None:
        try:
            self._queue.put_nowait((ref, type, reason, message[:1024]))
        except queue.Full:
            self.dropped += 1  # an event storm must not slow the component down

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued event was written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(5)

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._write(*item)
            except Exception:  # events are best effort: log the type, never the message body
                log.warning("writing an event failed", exc_info=True)
            finally:
                self._queue.task_done()

    def _write(self, ref: Ref, type: str, reason: str, message: str) -> None:
        key = (ref, type, reason, message)
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen.last < self._window:
            seen.count += 1
            seen.last = now
            self._seen.move_to_end(key)
            try:
                self._client.patch(
                    Event, seen.name, {"count": seen.count, "lastTimestamp": _now().strftime("%Y-%m-%dT%H:%M:%SZ")},
                    namespace=ref.namespace, patch_type=PatchType.MERGE,
                )  # fmt: skip
                return
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                # The event expired on the server: write a new one below.
        digest = hashlib.sha256("\0".join((*key[1:], ref.kind, ref.name)).encode()).hexdigest()
        name = f"{ref.name}.{digest[:10]}{int(time.time() * 1000) % 100000:05d}"
        stamp = _now()
        self._client.create(
            Event(
                metadata=ObjectMeta(name=name, namespace=ref.namespace),
                involvedObject=ObjectReference(
                    apiVersion=ref.api_version, kind=ref.kind, namespace=ref.namespace,
                    name=ref.name, uid=ref.uid or None,
                ),
                reason=reason,
                message=message,
                type=type,
                count=1,
                firstTimestamp=stamp,
                lastTimestamp=stamp,
                source=EventSource(component=self._component, host=self._host or None),
            )
        )  # fmt: skip
        self._seen[key] = _Seen(name, 1, now)
        self._seen.move_to_end(key)
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
