"""Which identity a pod gets: from AzureAssignedIdentity objects (standard mode, written by MIC)
or straight from AzureIdentityBinding + AzureIdentity (managed mode), from watch-fed caches.

Rules, in order (each differs from upstream on purpose where marked):

1. Candidates. Standard: the AzureAssignedIdentities labelled with this node whose `pod` and
   `podNamespace` are the pod's; when an entry records the pod's UID (our MIC writes the
   `aadpodidentity.k8s.io/pod-uid` annotation) and the caller's UID is known, the UIDs must be
   equal, so a recreated pod with the same name (a StatefulSet pod) never sees its
   predecessor's entries (upstream matches by name only). Managed: the bindings whose selector
   equals the pod's `aadpodidbinding` label, and the identities they name in their namespace.
2. Namespaces (ours: namespaced by default; upstream: only with --forceNamespaced). The
   identity, and the binding, must be in the pod's namespace. `--cluster-wide` lifts this,
   except for identities annotated `aadpodidentity.k8s.io/Behavior: namespaced`.
3. A requested identity (`client_id`, or `msi_res_id`/`mi_res_id`) is compared
   case-insensitively (upstream: case-sensitive client id); none requested: the first candidate
   in (identity namespace, identity name) order, so the choice is the same on every node and
   every request (upstream: map order, "at random").
4. States: "" and `Assigned` are usable; `Created` means MIC is still attaching the identity to
   the node. The caller waits (bounded, ended early when the client goes away) and then gets
   `Pending` (503 + Retry-After) rather than upstream's bare 404 after up to 80 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube.config.kubeconfig import SingleConfig

from azcommon.errors import NotFound, Unavailable
from kube.cache import Change, WatchCache
from podidentity.crds import (
    BINDING_LABEL,
    NODE_LABEL,
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

log = logging.getLogger(__name__)


class Pending(Unavailable):
    """MIC has not finished assigning the pod's identity yet: ask again after `retry_after`."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class PodRef:
    """The pod a request is for: name and namespace always; UID and labels when known."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Wanted:
    """The identity a request names, if any."""

    client_id: str = ""
    resource_id: str = ""

    @property
    def any(self) -> bool:
        return not (self.client_id or self.resource_id)

    def matches(self, identity: AzureIdentity) -> bool:
        if self.client_id:
            return identity.client_id.lower() == self.client_id.lower()
        if self.resource_id:
            return identity.resource_id.lower() == self.resource_id.lower()
        return True

    def describe(self) -> str:
        if self.client_id:
            return f"client_id {self.client_id}"
        if self.resource_id:
            return f"resource id {self.resource_id}"
        return "any identity"


@dataclass(frozen=True)
class Candidates:
    usable: tuple[AzureIdentity, ...]
    assigning: tuple[AzureIdentity, ...]


def _order(identity: AzureIdentity) -> tuple[str, str]:
    return (identity.meta.namespace, identity.meta.name)


def _unique(identities: list[AzureIdentity]) -> tuple[AzureIdentity, ...]:
    """Sorted by (namespace, name), one per identity object."""
    return tuple({_order(i): i for i in sorted(identities, key=_order)}.values())


def _safe(parse: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """A projection that leaves out (with a warning) objects that do not parse."""

    def project(raw: Mapping[str, Any]) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            log.warning("ignoring an object: %s", exc)
            return None

    return project


class IdentitySource:
    """Resolves a pod's identity; see the module docstring for the rules."""

    def __init__(
        self,
        config: SingleConfig,
        node: str,
        *,
        mode: str = "standard",
        cluster_wide: bool = False,
        **cache_options: Any,
    ) -> None:
        self.mode = mode
        self.cluster_wide = cluster_wide
        self._changed = threading.Condition()
        self._generation = 0
        self.caches: list[WatchCache[Any]] = []
        self.assigned: WatchCache[AzureAssignedIdentity] | None = None
        self.bindings: WatchCache[AzureIdentityBinding] | None = None
        self.identities: WatchCache[AzureIdentity] | None = None
        if mode == "standard":
            self.assigned = WatchCache(
                config, AzureAssignedIdentityResource, _safe(AzureAssignedIdentity.parse),
                name="azureassignedidentities", labels={NODE_LABEL: node},
                indexes={"pod": lambda a: [f"{a.pod_namespace}/{a.pod}"]},
                on_change=self._bump, **cache_options,
            )  # fmt: skip
            self.caches.append(self.assigned)
        elif mode == "managed":
            self.bindings = WatchCache(
                config, AzureIdentityBindingResource, _safe(AzureIdentityBinding.parse),
                name="azureidentitybindings", indexes={"selector": lambda b: [b.selector]},
                on_change=self._bump, **cache_options,
            )  # fmt: skip
            self.identities = WatchCache(
                config, AzureIdentityResource, _safe(AzureIdentity.parse),
                name="azureidentities", on_change=self._bump, **cache_options,
            )  # fmt: skip
            self.caches += [self.bindings, self.identities]
        else:
            raise ValueError(f"operation mode {mode!r} is not standard or managed")
        self.exceptions: WatchCache[AzurePodIdentityException] = WatchCache(
            config, AzurePodIdentityExceptionResource, _safe(AzurePodIdentityException.parse),
            name="azurepodidentityexceptions",
            indexes={"namespace": lambda e: [e.meta.namespace]}, **cache_options,
        )  # fmt: skip
        self.caches.append(self.exceptions)

    def start(self) -> IdentitySource:
        for cache in self.caches:
            cache.start()
        return self

    def stop(self) -> None:
        for cache in self.caches:
            cache.stop(timeout=0.1)  # see PodDirectory.stop

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(c.wait_synced(max(0.0, deadline - time.monotonic())) for c in self.caches)

    def _bump(self, change: Change[Any]) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    # -- rules ---------------------------------------------------------------------------------

    def excepted(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether an AzurePodIdentityException in the pod's namespace lets it through."""
        return any(e.matches(labels) for e in self.exceptions.by("namespace", namespace))

    def _allowed(self, pod: PodRef, identity: AzureIdentity, binding_ns: str) -> bool:
        same = identity.meta.namespace == pod.namespace and binding_ns == pod.namespace
        if same:
            return True
        return self.cluster_wide and not identity.namespaced

    def candidates(self, pod: PodRef) -> Candidates:
        usable: list[AzureIdentity] = []
        assigning: list[AzureIdentity] = []
        if self.assigned is not None:
            for entry in self.assigned.by("pod", pod.ref):
                if pod.uid and entry.pod_uid and entry.pod_uid != pod.uid:
                    continue  # written for an earlier pod of the same name
                if not self._allowed(pod, entry.identity, entry.binding.meta.namespace):
                    continue
                if entry.state.usable:
                    usable.append(entry.identity)
                elif entry.state.value == "Created":
                    assigning.append(entry.identity)
        else:
            assert self.bindings is not None and self.identities is not None
            selector = (pod.labels or {}).get(BINDING_LABEL, "")
            if selector:
                for binding in self.bindings.by("selector", selector):
                    ns = binding.meta.namespace
                    identity = self.identities.get(ns, binding.azure_identity)
                    if identity is not None and self._allowed(pod, identity, ns):
                        usable.append(identity)
        return Candidates(_unique(usable), _unique(assigning))

    def choose(self, pod: PodRef, wanted: Wanted) -> AzureIdentity | None:
        """The identity for this request now, or None while it may still come (assigning)."""
        found = self.candidates(pod)
        for identity in found.usable:
            if wanted.matches(identity):
                return identity
        if any(wanted.matches(i) for i in found.assigning):
            return None
        if found.usable:
            names = ", ".join(
                f"{i.meta.namespace}/{i.meta.name} ({i.client_id})" for i in found.usable
            )
            raise NotFound(
                f"pod {pod.ref} asked for {wanted.describe()}, which is not among its "
                f"identities: {names}"
            )
        if self.mode == "managed" or (pod.labels is not None and BINDING_LABEL not in pod.labels):
            raise NotFound(self._nothing(pod))
        return None  # labelled (or unknown) pod in standard mode: MIC may be about to assign

    def _nothing(self, pod: PodRef) -> str:
        where = "in its namespace" if not self.cluster_wide else "in the cluster"
        if pod.labels is not None and BINDING_LABEL not in pod.labels:
            return (
                f"pod {pod.ref} has no {BINDING_LABEL} label, so no AzureIdentityBinding selects it"
            )
        return (
            f"no identity is assigned to pod {pod.ref}: no AzureIdentityBinding {where} "
            f"selects its {BINDING_LABEL} label, or its AzureIdentity is missing"
        )

    def resolve(
        self,
        pod: PodRef,
        wanted: Wanted,
        *,
        wait: float,
        retry_after: int,
        gone: Callable[[], bool] = lambda: False,
    ) -> AzureIdentity:
        """The identity, waiting up to `wait` seconds while MIC assigns; `Pending` after that.

        The wait ends early when `gone()` says the client went away (it is polled a few times a
        second), so an abandoned request holds nothing.
        """
        deadline = time.monotonic() + wait
        while True:
            with self._changed:
                generation = self._generation
            identity = self.choose(pod, wanted)
            if identity is not None:
                return identity
            remaining = deadline - time.monotonic()
            if remaining <= 0 or gone():
                break
            with self._changed:
                if self._generation == generation:
                    self._changed.wait(min(remaining, 0.25))
        found = self.candidates(pod)
        if not found.assigning and not found.usable and self.mode == "standard":
            detail = f"no AzureAssignedIdentity for pod {pod.ref} on this node yet"
        else:
            detail = f"the identity of pod {pod.ref} is still being assigned to this node"
        raise Pending(
            f"{detail} (MIC assigns identities after the pod is scheduled); retry after "
            f"{retry_after}s",
            retry_after,
        )
