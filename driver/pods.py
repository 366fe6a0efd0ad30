"""Who a FlexVolume mount is for: the pod's identity from a source the pod cannot write.

kubelet gives a FlexVolume driver the pod's name, namespace and service account as options
(`kubernetes.io/pod.name`, ...), but it applies the pod's own `flexVolume.options` after them, so
a pod can write any of those keys and claim another pod's identity (and with it, through NMI,
that pod's Azure identity). Only the pod uid in the mount dir is kubelet's for certain
(`<kubelet-root>/pods/<uid>/volumes/azure~kv/<name>`).

`ApiPods` (the default, `--flexvolume-pod-source api`) looks the uid up in a watch-fed cache of
this node's pods and replaces every identity option with what the API server says; an option the
pod wrote that disagrees is refused, naming the key. A pod not yet in the cache is waited for
briefly, then gets a retryable error (kubelet retries the mount).

`KubeletOptions` (`--flexvolume-pod-source kubelet-options`) trusts the options as given: only
for runs without an API server (tests, the demo); the daemon warns loudly at start.

The other keys kubelet sets need no verification (see README, "Security notes"):
`kubernetes.io/secret/*` carry the pod's own secretRef values (a pod writing them itself only
supplies its own credential), `fsType`, `readwrite`, `pvOrVolumeName` and `mountsDir` mean
nothing for a tmpfs of read-only files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lightkube.config.kubeconfig import SingleConfig

from azcommon.errors import InvalidArgument, KvError, Unavailable
from driver.volumes import VolumeRecord
from kube.cache import Change, WatchCache
from kube.events import WARNING, EventRecorder, Ref
from kube.resources import Pod

log = logging.getLogger(__name__)

FLEX = "kubernetes.io/"
CSI = "csi.storage.k8s.io/"
# The identity keys a pod could forge, by what they name; both prefixes are read by the parser.
_IDENTITY = {
    "uid": ("pod.uid",),
    "name": ("pod.name",),
    "namespace": ("pod.namespace",),
    "service_account": ("serviceaccount.name",),
    "fs_group": ("mounterargs.fsgroup", "fsgroup"),
}
_CANONICAL = {
    "uid": FLEX + "pod.uid",
    "name": FLEX + "pod.name",
    "namespace": FLEX + "pod.namespace",
    "service_account": FLEX + "serviceAccount.name",
    "fs_group": FLEX + "mounterArgs.FsGroup",
}
_KEY_FIELD = {
    prefix + suffix: field_
    for field_, suffixes in _IDENTITY.items()
    for suffix in suffixes
    for prefix in (FLEX, CSI)
}


@dataclass(frozen=True)
class NodePod:
    """What the driver keeps of one of this node's pods."""

    uid: str
    name: str
    namespace: str
    service_account: str
    fs_group: str  # "" when the pod sets none
    phase: str


def project_pod(raw: Mapping[str, Any]) -> NodePod | None:
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    uid = str(meta.get("uid") or "")
    if not uid:
        return None
    group = (spec.get("securityContext") or {}).get("fsGroup")
    return NodePod(
        uid=uid,
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or ""),
        service_account=str(spec.get("serviceAccountName") or ""),
        fs_group="" if group is None else str(group),
        phase=str((raw.get("status") or {}).get("phase") or ""),
    )


class PodSource(Protocol):
    """Turns a FlexVolume mount's options into attributes whose pod identity can be trusted."""

    def attributes(
        self, target: str, path_uid: str, options: Mapping[str, str]
    ) -> dict[str, str]: ...


class KubeletOptions:
    """Trusts the options as kubelet passed them (a pod can forge them): no API server."""

    verified = False

    def attributes(self, target: str, path_uid: str, options: Mapping[str, str]) -> dict[str, str]:
        return dict(options)


class NodePods:
    """This node's pods by uid, from a watch-fed cache (`spec.nodeName=<node>`)."""

    def __init__(self, cache: WatchCache[NodePod]) -> None:
        self._cache = cache
        self._changed = threading.Condition()
        cache.add_callback(self._on_change)

    @classmethod
    def for_node(cls, config: SingleConfig, node_name: str) -> NodePods:
        cache: WatchCache[NodePod] = WatchCache(
            config,
            Pod,
            project_pod,
            name="node-pods",
            fields={"spec.nodeName": node_name},
            indexes={"uid": lambda pod: (pod.uid,)},
        )
        return cls(cache)

    def start(self) -> NodePods:
        self._cache.start()
        return self

    def stop(self) -> None:
        self._cache.stop()

    def find(self, uid: str, timeout: float) -> NodePod | None:
        """The pod with `uid`, waiting up to `timeout` seconds for the cache to learn of it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self._cache.synced:
                    found = self._cache.by("uid", uid)
                    if found:
                        return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # Woken by every change; the bound also covers the first list (no callback).
                self._changed.wait(min(remaining, 0.25))

    def _on_change(self, change: Change[NodePod]) -> None:
        with self._changed:
            self._changed.notify_all()


class ApiPods:
    """Verifies FlexVolume pod options against the API server (see the module docstring)."""

    verified = True

    def __init__(self, pods: NodePods, wait: float) -> None:
        self._pods = pods
        self._wait = wait

    def attributes(self, target: str, path_uid: str, options: Mapping[str, str]) -> dict[str, str]:
        if not path_uid:
            raise InvalidArgument(
                f"mount dir {target} is not kubelet's <root>/pods/<uid>/volumes/azure~kv/<name>:"
                " the pod it is for cannot be verified"
            )
        pod = self._pods.find(path_uid, self._wait)
        if pod is None:
            # Non-final: kubelet keeps the dir and retries; the watch may just be behind.
            raise Unavailable(
                f"pod uid {path_uid} is not (yet) among this node's pods at the API server;"
                " the mount is retried"
            )
        truth = {
            "uid": pod.uid,
            "name": pod.name,
            "namespace": pod.namespace,
            "service_account": pod.service_account,
            "fs_group": pod.fs_group,
        }
        verified: dict[str, str] = {}
        for key, value in options.items():
            field_ = _KEY_FIELD.get(_fold(key))
            if field_ is None:
                verified[key] = value
            elif value.strip() != truth[field_]:
                # Neither value is quoted: the message goes to the pod's events and kubelet's log.
                raise InvalidArgument(
                    f"option {key} does not match the pod this volume is mounted for (pod uid "
                    f"{pod.uid}); a pod's options cannot name another pod, service account or"
                    " group: remove the option"
                )
        for field_, key in _CANONICAL.items():
            if truth[field_]:
                verified[key] = truth[field_]
        return verified


def _fold(key: str) -> str:
    # The same folding as the parser's (ASCII only), so no spelling escapes the check.
    return key.lower() if key.isascii() else key


class KeptFilesEvents:
    """Tells a pod, through an Event, that a republish kept its old files (issue 14, item 12):
    the mount is fine for kubelet, so without the Event nobody would notice that Key Vault
    refused a refresh."""

    REASON = "SecretsNotRefreshed"

    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder

    def __call__(self, record: VolumeRecord, error: KvError) -> None:
        pod = record.spec.pod
        if not (pod.name and pod.namespace):
            return  # a volume without pod info (CSI without podInfoOnMount): the log has it
        self._recorder.record(
            Ref("v1", "Pod", pod.namespace, pod.name, pod.uid),
            self.REASON,
            f"volume {record.volume_id} could not be refreshed from Key Vault, its current files"
            f" are kept: {error.code}: {error}",
            WARNING,
        )
