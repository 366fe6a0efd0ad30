"""The Kubernetes access layer shared by every component that talks to the API server.

One well-kept client library behind small typed helpers: watch-fed caches (list, then watch from
the resourceVersion, relist on 410 Gone) limited by field and label selectors to what a component
needs, idempotent writes, Events, and leader election on a `coordination.k8s.io/v1` Lease.

Dependency rule: `kube` knows no product domain; it may use `azcommon` for logging, and it never
imports `driver` or `podidentity`.
"""

from kube.cache import Backoff, Change, ChangeType, WatchCache
from kube.client import load_config, make_client
from kube.events import EventRecorder, Ref

__all__ = [
    "Backoff",
    "Change",
    "ChangeType",
    "EventRecorder",
    "Ref",
    "WatchCache",
    "load_config",
    "make_client",
]
