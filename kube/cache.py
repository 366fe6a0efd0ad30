"""Watch-fed caches: list, then watch from the list's resourceVersion; relist on 410 Gone.

`WatchCache` keeps a projection of every object a selector matches, in memory, current within
the watch's latency, so readers never call the API server:

- **list** (in chunks when unselected, so a large collection never sits in memory twice; a
  selected list comes whole, see `_relist`), then **watch** from the
  list's `resourceVersion`; a dropped watch reconnects from the last version it saw, with
  exponential backoff and jitter; **410 Gone** (the version is too old) relists and reconciles the
  difference as changes, so consumers miss nothing;
- **selectors** (`fields`, `labels`, `namespace`): a node component lists its own node's pods;
- a **projection** turns each API object (a plain dict) into a small frozen value of the
  consumer's, keeping only the fields it needs; returning None leaves the object out;
- **indexes** (name -> function giving the keys of a value), e.g. pods by IP and by UID;
- `wait_synced()` for the first complete list; **change callbacks** for incremental consumers,
  called in order on the cache's own thread, after the cache itself was updated.

Concurrency model: one daemon thread per cache, readers on any thread under one lock. Threads, not
asyncio, because the components that read the caches (NMI's HTTP server, MIC's reconcile loop,
the driver) are thread-based and the lookups are dictionary reads: a lock costs less than a hop
into an event loop. The thread owns its own lightkube client, so `stop()` can close it and end a
watch that is blocked waiting for events.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

import httpx2
from lightkube import ALL_NS, ApiError, Client
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.resource import NamespacedResource

from kube.client import make_client

log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[str, str]
"""(namespace, name); namespace is "" for cluster-scoped objects."""

Projection = Callable[[Mapping[str, Any]], "T | None"]
IndexFn = Callable[[T], Iterable[str]]


class ChangeType(Enum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"


@dataclass(frozen=True)
class Change(Generic[T]):
    """One change to the cache: `old` is None when added, `new` is None when deleted."""

    type: ChangeType
    key: Key
    old: T | None
    new: T | None


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: `initial` doubling up to `cap`, each with up to `jitter` added."""

    initial: float = 0.2
    cap: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int) -> float:
        base = min(self.cap, self.initial * 2.0 ** max(0, attempt - 1))
        return float(base * (1.0 + random.uniform(0.0, self.jitter)))


@dataclass
class CacheStats:
    """What the cache went through (for metrics and tests): lists, watch (re)connects, 410s."""

    lists: int = 0
    watches: int = 0
    gone: int = 0
    errors: int = 0
    events: int = 0


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class WatchCache(Generic[T]):
    """A projection of the objects of one resource kind that match the selectors, kept current.

    `resource` is a lightkube resource class; generic ones (lightkube `create_*_resource`) keep
    the objects as dicts, which is what projections take.
    """

    def __init__(
        self,
        config: SingleConfig,
        resource: type[Any],
        project: Callable[[Mapping[str, Any]], T | None],
        *,
        name: str | None = None,
        namespace: str | None = None,
        fields: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        indexes: Mapping[str, Callable[[T], Iterable[str]]] | None = None,
        on_change: Callable[[Change[T]], None] | None = None,
        chunk_size: int | None = 500,
        server_timeout: int = 60,
        backoff: Backoff = Backoff(),
        client_factory: Callable[[SingleConfig], Client] | None = None,
    ) -> None:
        self.name = name or resource.__name__
        self._config = config
        self._resource = resource
        self._project = project
        self._namespace = namespace
        self._fields = dict(fields or {})
        self._labels = dict(labels or {})
        self._index_fns: dict[str, Callable[[T], Iterable[str]]] = dict(indexes or {})
        self._callbacks: list[Callable[[Change[T]], None]] = [on_change] if on_change else []
        self._chunk_size = chunk_size
        self._server_timeout = server_timeout
        self._backoff = backoff
        self._client_factory = client_factory or (lambda c: make_client(c, timeout=30.0))
        self._lock = threading.Lock()
        self._items: dict[Key, T] = {}
        self._indexes: dict[str, dict[str, set[Key]]] = {n: {} for n in self._index_fns}
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Client | None = None
        self._version: str | None = None
        self.stats = CacheStats()

    # -- lifecycle -----------------------------------------------------------------------------

    def add_callback(self, callback: Callable[[Change[T]], None]) -> None:
        """Add a change callback (before `start`, or it misses the first list's additions)."""
        self._callbacks.append(callback)

    def start(self) -> WatchCache[T]:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"watch-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 1.0, *, interrupt: bool = True) -> None:
        """Stop watching: from now on nothing is applied and no callback runs.

        The thread's client is closed, so its next request fails and the thread ends; a watch
        already waiting for events ends when the server closes it (`server_timeout`, 60 s by
        default). The thread is a daemon, so it never holds up the process's exit.

        `interrupt=False` only sets the flag and lets the thread end with its watch: closing a
        TLS connection that another thread is reading frees its file descriptor while OpenSSL
        still reads from that number, so a process that goes on making TLS connections (tests,
        a component stopping one cache of several) can see another connection's bytes stolen.
        """
        self._stopping.set()
        if not interrupt:
            return
        client = self._client
        if client is not None:
            try:
                client._client._client.close()  # the httpx client: unblocks the streaming read
            except Exception:  # closing must never raise into the caller's shutdown
                log.debug("closing the %s watch client failed", self.name, exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Whether the first complete list arrived within `timeout` seconds."""
        return self._synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def resource_version(self) -> str | None:
        """The last resourceVersion seen (list or event)."""
        return self._version

    # -- reads ---------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> T | None:
        with self._lock:
            return self._items.get((namespace, name))

    def by(self, index: str, value: str) -> list[T]:
        """The values whose index function gave `value`, in key order (deterministic)."""
        with self._lock:
            keys = self._indexes[index].get(value, ())
            return [self._items[k] for k in sorted(keys)]

    def items(self) -> list[T]:
        with self._lock:
            return [self._items[k] for k in sorted(self._items)]

    def keys(self) -> list[Key]:
        with self._lock:
            return sorted(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        need_list = True
        while not self._stopping.is_set():
            try:
                if self._client is None:
                    self._client = self._client_factory(self._config)
                if need_list:
                    self._relist(self._client)
                    need_list = False
                attempt = 0
                self._watch(self._client)
            except ApiError as exc:
                if self._stopping.is_set():
                    break
                if exc.status.code == 410:
                    self.stats.gone += 1
                    log.info("%s: watch version too old (410 Gone), relisting", self.name)
                    need_list = True
                    continue
                attempt += 1
                self.stats.errors += 1
                log.warning(
                    "%s: API error %s (%s); retrying", self.name, exc.status.code,
                    exc.status.reason,
                )  # fmt: skip
                self._sleep(self._backoff.delay(attempt))
            except (httpx2.HTTPError, OSError, ValueError, RuntimeError) as exc:
                if self._stopping.is_set():
                    break
                attempt += 1
                self.stats.errors += 1
                log.info("%s: watch dropped (%s); reconnecting", self.name, type(exc).__name__)
                # A closed client cannot be reused; a fresh one reconnects.
                self._reset_client()
                self._sleep(self._backoff.delay(attempt))
        self._reset_client()

    def _reset_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client._client._client.close()
            except Exception:
                log.debug("closing the %s client failed", self.name, exc_info=True)

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _selectors(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self._namespace is not None:
            kwargs["namespace"] = self._namespace
        elif issubclass(self._resource, NamespacedResource):
            kwargs["namespace"] = ALL_NS  # cluster-scoped kinds (Node) take no namespace
        if self._fields:
            kwargs["fields"] = self._fields
        if self._labels:
            kwargs["labels"] = self._labels
        return kwargs

    def _relist(self, client: Client) -> None:
        # Paginated lists with a selector lose items on some API servers (seen on v1.24.0: a
        # field-selected list of 250 pods among 1,500 came back with 198 with limit=500, the
        # same with kubectl --chunk-size). A selected list is small anyway: it is not chunked.
        selected = bool(self._fields or self._labels)
        chunk = None if selected else self._chunk_size
        listing = client.list(self._resource, chunk_size=chunk, **self._selectors())
        fresh: dict[Key, T] = {}
        for obj in listing:
            raw = _as_dict(obj)
            value = self._project(raw)
            if value is not None:
                fresh[object_key(raw)] = value
        version = listing.resourceVersion
        self.stats.lists += 1
        changes: list[Change[T]] = []
        with self._lock:
            old = self._items
            for key, value in fresh.items():
                before = old.get(key)
                if before is None:
                    changes.append(Change(ChangeType.ADDED, key, None, value))
                elif before != value:
                    changes.append(Change(ChangeType.MODIFIED, key, before, value))
            for key, before in old.items():
                if key not in fresh:
                    changes.append(Change(ChangeType.DELETED, key, before, None))
            self._items = fresh
            self._rebuild_indexes()
            self._version = version
        self._synced.set()
        for change in sorted(changes, key=lambda c: c.key):
            self._notify(change)

    def _watch(self, client: Client) -> None:
        self.stats.watches += 1
        stream = client.watch(
            self._resource,
            resource_version=self._version,
            server_timeout=self._server_timeout,
            **self._selectors(),
        )
        for kind, obj in stream:
            if self._stopping.is_set():
                return
            self.stats.events += 1
            raw = _as_dict(obj)
            version = (raw.get("metadata") or {}).get("resourceVersion")
            if kind == "BOOKMARK":
                self._version = version or self._version
                continue
            key = object_key(raw)
            value = None if kind == "DELETED" else self._project(raw)
            change = self._apply(key, value)
            self._version = version or self._version
            if change is not None:
                self._notify(change)

    def _apply(self, key: Key, value: T | None) -> Change[T] | None:
        with self._lock:
            if self._stopping.is_set():
                return None
            before = self._items.get(key)
            if value is None:
                if before is None:
                    return None
                del self._items[key]
                self._unindex(key, before)
                return Change(ChangeType.DELETED, key, before, None)
            if before == value:
                return None
            if before is not None:
                self._unindex(key, before)
            self._items[key] = value
            self._index(key, value)
            kind = ChangeType.ADDED if before is None else ChangeType.MODIFIED
            return Change(kind, key, before, value)

    def _index(self, key: Key, value: T) -> None:
        for name, fn in self._index_fns.items():
            table = self._indexes[name]
            for v in fn(value):
                table.setdefault(v, set()).add(key)

    def _unindex(self, key: Key, value: T) -> None:
        for name, fn in self._index_fns.items():
            table = self._indexes[name]
            for v in fn(value):
                keys = table.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del table[v]

    def _rebuild_indexes(self) -> None:
        self._indexes = {n: {} for n in self._index_fns}
        for key, value in self._items.items():
            self._index(key, value)

    def _notify(self, change: Change[T]) -> None:
        if self._stopping.is_set():
            return
        for callback in self._callbacks:
            try:
                callback(change)
            except Exception:  # one consumer's bug must not stop the cache
                log.exception("%s: change callback %r failed", self.name, callback)


def _as_dict(obj: Any) -> Mapping[str, Any]:
    """Generic lightkube objects are dicts already; typed models are turned into one."""
    if isinstance(obj, dict):
        return obj
    to_dict = getattr(obj, "to_dict", None)
    if to_dict is None:
        raise ValueError(f"cannot read a {type(obj).__name__} as an API object")
    result: Mapping[str, Any] = to_dict()
    return result
