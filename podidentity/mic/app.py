"""MIC's composition root: settings -> clients -> caches -> reconciler -> leader election -> loop.

`Mic` wires the parts and `run()` drives the reconcile loop while this replica leads; it returns
when leadership is lost or `stop()` is called (the command then exits, and the Deployment
starts a fresh replica: no state survives a lost lease). Tests and benchmarks build a `Mic` with
a kubeconfig and the devstack's ARM in-process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from lightkube import operators
from lightkube.config.kubeconfig import SingleConfig

from azcommon.log import log_unexpected
from kube.cache import WatchCache
from kube.client import make_client
from kube.events import EventRecorder
from kube.lease import LeaderElector, LeaseTimings
from kube.resources import Node, Pod
from podidentity.crds import (
    BINDING_LABEL,
    AzureAssignedIdentity,
    AzureIdentity,
    AzureIdentityBinding,
    AzurePodIdentityException,
)
from podidentity.crds.resources import (
    AzureAssignedIdentityResource,
    AzureIdentityBindingResource,
    AzureIdentityResource,
    AzurePodIdentityExceptionResource,
)
from podidentity.mic.arm import Arm, NotActing
from podidentity.mic.model import PodView, project_node, project_pod
from podidentity.mic.reconcile import Caches, ObservedAssigned, Reconciler
from podidentity.mic.settings import MicSettings
from podidentity.mic.writer import AssignedWriter

log = logging.getLogger(__name__)

RBAC: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset({"list", "watch"}),
    ("", "nodes"): frozenset({"list", "watch"}),
    ("", "events"): frozenset({"create", "patch"}),  # kube.events: create, then aggregate
    ("aadpodidentity.k8s.io", "azureidentities"): frozenset({"list", "watch"}),
    ("aadpodidentity.k8s.io", "azureidentitybindings"): frozenset({"list", "watch"}),
    ("aadpodidentity.k8s.io", "azurepodidentityexceptions"): frozenset({"list", "watch"}),
    ("aadpodidentity.k8s.io", "azureassignedidentities"): frozenset(
        {"list", "watch", "create", "update", "patch", "delete"}
    ),
    ("coordination.k8s.io", "leases"): frozenset({"get", "create", "update"}),
}
"""Every (API group, resource) MIC touches and the verbs it uses: deploy/'s RBAC grants
exactly these (tests/deploy checks it)."""


def _lenient(kind: str, parse: Callable[[Mapping[str, Any]], Any]) -> Callable[..., Any]:
    """A projection that leaves out (and logs) an object it cannot read, so one bad object never
    stops the others."""

    def project(raw: Mapping[str, Any]) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            log.warning("ignoring %s: %s", kind, exc)
            return None

    return project


def project_assigned(raw: Mapping[str, Any]) -> ObservedAssigned:
    meta = raw.get("metadata") or {}
    return ObservedAssigned(
        AzureAssignedIdentity.parse(raw),
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(str(f) for f in meta.get("finalizers") or ()),
    )


class Mic:
    """One MIC replica: caches (started at once, so a takeover starts warm), the reconciler,
    and the Lease campaign."""

    def __init__(
        self,
        settings: MicSettings,
        config: SingleConfig,
        arm_credential: Any,
        arm_endpoint: str,
        *,
        ca_bundle: str | None = None,
        immutable: tuple[str, ...] = (),
        lease_timings: LeaseTimings | None = None,
    ) -> None:
        self.settings = settings
        self.client = make_client(config, field_manager="aad-pod-identity-mic")
        duration = settings.leader_election_duration
        self.elector = LeaderElector(
            self.client,
            settings.leader_election_namespace,
            settings.leader_election_name,
            settings.instance,
            lease_timings or LeaseTimings(duration, duration / 2, duration / 4),
        )
        self._stop = threading.Event()
        self.active = threading.Event()
        self.arm = Arm(arm_credential, arm_endpoint, ca_bundle=ca_bundle,
                       max_retries=settings.arm_max_retries, guard=self.guard)  # fmt: skip
        self.writer = AssignedWriter(self.client, self.guard)
        self.events = EventRecorder(self.client, "aad-pod-identity-mic", settings.instance)
        pods = WatchCache[PodView](
            config, Pod, project_pod, name="pods",
            labels=cast(Any, {BINDING_LABEL: operators.exists()}),
            indexes={"selector": lambda p: [p.selector], "node": lambda p: [p.node],
                     "namespace": lambda p: [p.namespace]},
        )  # fmt: skip
        self.caches_list: list[WatchCache[Any]] = [
            pods,
            WatchCache(config, Node, project_node, name="nodes"),
            WatchCache(config, AzureIdentityResource,
                       _lenient("AzureIdentity", AzureIdentity.parse), name="identities"),
            WatchCache(config, AzureIdentityBindingResource,
                       _lenient("AzureIdentityBinding", AzureIdentityBinding.parse),
                       name="bindings",
                       indexes={"selector": lambda b: [b.selector],
                                "identity": lambda b: [f"{b.meta.namespace}/{b.azure_identity}"]}),
            WatchCache(config, AzurePodIdentityExceptionResource,
                       _lenient("AzurePodIdentityException", AzurePodIdentityException.parse),
                       name="exceptions", indexes={"namespace": lambda e: [e.meta.namespace]}),
            WatchCache(config, AzureAssignedIdentityResource,
                       _lenient("AzureAssignedIdentity", project_assigned), name="assigned",
                       indexes={"pod": lambda o: [f"{o.aai.pod_namespace}/{o.aai.pod}"]}),
        ]  # fmt: skip
        c = self.caches_list
        self.caches = Caches(c[0], c[1], c[2], c[3], c[4], c[5])
        immutable_ids = tuple(settings.immutable_identities) + immutable
        self.reconciler = Reconciler(
            self.caches, self.writer, self.arm, self.events,
            namespaced=settings.namespaced, immutable=(),
            refused_retry=settings.refused_retry_interval,
            arm_concurrency=settings.arm_concurrency, api_concurrency=settings.api_concurrency,
            guard=self.guard,
        )  # fmt: skip
        self._immutable_client_ids = {i.lower() for i in immutable_ids}
        r = self.reconciler
        callbacks: list[Callable[[Any], None]] = [
            r.on_pod, r.on_node, r.on_identity, r.on_binding, r.on_exception, r.on_assigned,
        ]  # fmt: skip
        for cache, callback in zip(c, callbacks, strict=True):
            cache.add_callback(callback)
        c[2].add_callback(lambda _change: self._identities_changed())
        self._forced = threading.Event()

    # -- immutable identities are named by client id; ARM speaks resource ids ------------------

    def _identities_changed(self) -> None:
        if not self._immutable_client_ids:
            return
        ids = {
            i.resource_id.lower()
            for i in self.caches.identities.items()
            if i.client_id.lower() in self._immutable_client_ids and i.resource_id
        }
        self.reconciler.immutable = ids

    # -- leadership -----------------------------------------------------------------------------

    def guard(self) -> None:
        """Raise NotActing unless this replica leads right now (checked before every write)."""
        if self._stop.is_set() or not self.elector.is_leader:
            raise NotActing("this replica does not hold the lease")

    def start_caches(self, timeout: float = 60.0) -> None:
        for cache in self.caches_list:
            cache.start()
        for cache in self.caches_list:
            if not cache.wait_synced(timeout):
                raise TimeoutError(f"the {cache.name} cache did not sync within {timeout:.0f} s")

    def force_resync(self) -> None:
        """Recompute everything now (tests, benchmarks: an idle hour in a few seconds)."""
        self._forced.set()
        self.reconciler._wake.set()

    def run(self) -> None:
        """Campaign, then reconcile while leading; returns on stop() or when the lease is lost."""
        self.start_caches()
        self.elector.start()
        while not self._stop.is_set() and not self.elector.wait_leader(0.5):
            pass
        if self._stop.is_set():
            return
        log.info("leading: reconciling")
        self.active.set()
        r = self.reconciler
        s = self.settings
        r.mark_all()
        next_resync = time.monotonic() + s.resync_interval
        next_verify = (
            time.monotonic() + s.arm_verify_interval if s.arm_verify_interval > 0 else None
        )
        try:
            while not self._stop.is_set():
                if not self.elector.is_leader:
                    log.warning("lease lost: stopping at once")
                    return
                now = time.monotonic()
                if self._forced.is_set() or now >= next_resync:
                    self._forced.clear()
                    r.mark_all()
                    next_resync = now + s.resync_interval
                if next_verify is not None and now >= next_verify:
                    r.verify()
                    next_verify = now + s.arm_verify_interval
                r.due_retries()
                if r.pending:
                    try:
                        r.cycle()
                    except NotActing:
                        raise
                    except Exception as exc:  # a bug must not end the loop; state is re-read
                        log_unexpected(log, "reconcile cycle", exc)
                        self._stop.wait(1.0)
                        r.mark_all()
                    continue
                r.wait(0.5)
        except NotActing:
            log.warning("lease lost mid-cycle: stopping at once")
        finally:
            self.active.clear()

    def stop(self) -> None:
        self._stop.set()
        self.reconciler._wake.set()

    def close(self) -> None:
        """Release the lease (if held) and stop everything."""
        self.stop()
        self.elector.stop(release=True)
        for cache in self.caches_list:
            cache.stop(interrupt=False)
        self.reconciler.close()
        self.events.close()


def serve_probe(addr: str, mic: Mic) -> ThreadingHTTPServer | None:
    """/healthz: 200 "Active" while leading, 200 "Not Active" on standby (alive either way)."""
    if not addr:
        return None
    host, _, port = addr.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/healthz":
                self.send_error(404)
                return
            body = b"Active" if mic.active.is_set() else b"Not Active"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="probe", daemon=True).start()
    return server
