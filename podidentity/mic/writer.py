"""AzureAssignedIdentity writes: create, replace, status change, removal with the finalizer.

Every write first asks the guard (leadership); each returns the resourceVersion the API server
gave the object (or None once it is gone), which the reconciler keeps as an expectation so that
a cache that has not caught up yet is not mistaken for work to do. Status changes are merge
patches of `status.status` on the main resource (the CRD has no status subresource). Removal
deletes the object and then lifts our finalizer, so the object stays visible (and blocks a
namespace's deletion) until MIC has detached its identity.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError, Client
from lightkube.types import PatchType

from podidentity.crds import ASSIGNED_FINALIZER, NODE_LABEL, POD_UID_ANNOTATION, AssignedState
from podidentity.crds.resources import AzureAssignedIdentityResource
from podidentity.mic.model import Want, assigned_body

log = logging.getLogger(__name__)


@dataclass
class WriteStats:
    creates: int = 0
    replaces: int = 0
    status: int = 0
    deletes: int = 0
    conflicts: int = 0

    @property
    def total(self) -> int:
        return self.creates + self.replaces + self.status + self.deletes


class AssignedWriter:
    """Writes AzureAssignedIdentities with one shared client (thread-safe)."""

    def __init__(self, client: Client, guard: Callable[[], None]) -> None:
        self._client = client
        self._guard = guard
        self._lock = threading.Lock()
        self.stats = WriteStats()

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)

    def create(self, want: Want, state: AssignedState) -> str:
        self._guard()
        body = assigned_body(want, state.value, ASSIGNED_FINALIZER, POD_UID_ANNOTATION, NODE_LABEL)
        self._count("creates")
        created = self._client.create(AzureAssignedIdentityResource(body))
        return _version(created)

    def replace(self, want: Want, resource_version: str, state: AssignedState) -> str:
        self._guard()
        body = assigned_body(want, state.value, ASSIGNED_FINALIZER, POD_UID_ANNOTATION, NODE_LABEL)
        body["metadata"]["resourceVersion"] = resource_version
        self._count("replaces")
        replaced = self._client.replace(AzureAssignedIdentityResource(body))
        return _version(replaced)

    def set_state(self, namespace: str, name: str, state: AssignedState) -> str:
        self._guard()
        self._count("status")
        patched = self._client.patch(
            AzureAssignedIdentityResource, name, {"status": {"status": state.value}},
            namespace=namespace, patch_type=PatchType.MERGE,
        )  # fmt: skip
        return _version(patched)

    def remove(self, namespace: str, name: str, finalizers: tuple[str, ...]) -> None:
        """Delete, then lift our finalizer (other finalizers stay)."""
        self._guard()
        self._count("deletes")
        try:
            self._client.delete(AzureAssignedIdentityResource, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            return
        if ASSIGNED_FINALIZER not in finalizers:
            return
        rest = [f for f in finalizers if f != ASSIGNED_FINALIZER]
        self._count("status")
        try:
            self._client.patch(
                AzureAssignedIdentityResource, name, {"metadata": {"finalizers": rest or None}},
                namespace=namespace, patch_type=PatchType.MERGE,
            )  # fmt: skip
        except ApiError as exc:
            if exc.status.code != 404:
                raise


def _version(obj: Any) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if meta is not None:
        return str(meta.get("resourceVersion") or "")
    return str(getattr(getattr(obj, "metadata", None), "resourceVersion", "") or "")
