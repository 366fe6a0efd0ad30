"""This node's pods, from a watch-fed cache: who is calling, by source address.

Only pods bound to this node are listed and watched (field selector `spec.nodeName`), and only
the fields NMI uses are kept (`PodView`), so memory follows the node's pod count, not the
cluster's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightkube.config.kubeconfig import SingleConfig

from azcommon.errors import FailedPrecondition, NotFound
from kube.cache import WatchCache
from kube.resources import Pod

LIVE_PHASES = ("Pending", "Running")


@dataclass(frozen=True)
class PodView:
    """What NMI keeps of a pod."""

    namespace: str
    name: str
    uid: str
    ip: str
    phase: str
    ips: tuple[str, ...]  # every address (dual-stack pods have two)
    host_network: bool
    labels: Mapping[str, str]
    owner: str  # "Kind/name" of the controlling owner, "" without one

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def project_pod(raw: Mapping[str, Any]) -> PodView:
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    owner = next(
        (f"{o.get('kind')}/{o.get('name')}" for o in meta.get("ownerReferences") or ()
         if o.get("controller")),
        "",
    )  # fmt: skip
    return PodView(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        ip=str(status.get("podIP") or ""),
        phase=str(status.get("phase") or ""),
        ips=_ips(status),
        host_network=bool(spec.get("hostNetwork")),
        labels=dict(meta.get("labels") or {}),
        owner=owner,
    )


def _ips(status: Mapping[str, Any]) -> tuple[str, ...]:
    found = [str(status.get("podIP") or "")]
    found += [str(a.get("ip") or "") for a in status.get("podIPs") or ()]
    return tuple(ip for ip in dict.fromkeys(found) if ip)


def _by_ip(pod: PodView) -> list[str]:
    return list(pod.ips)


def _by_uid(pod: PodView) -> list[str]:
    return [pod.uid] if pod.uid else []


class PodDirectory:
    """This node's pods, by IP, by UID and by name."""

    def __init__(self, config: SingleConfig, node: str, **cache_options: Any) -> None:
        self.cache: WatchCache[PodView] = WatchCache(
            config, Pod, project_pod, name="pods",
            fields={"spec.nodeName": node}, indexes={"ip": _by_ip, "uid": _by_uid},
            **cache_options,
        )  # fmt: skip

    def start(self) -> PodDirectory:
        self.cache.start()
        return self

    def stop(self) -> None:
        # An idle watch only ends when the server closes it; the thread is a daemon that acts
        # on nothing after stop, so there is no point in waiting for it.
        self.cache.stop(timeout=0.1)

    def get(self, namespace: str, name: str) -> PodView | None:
        return self.cache.get(namespace, name)

    def caller(self, ip: str) -> PodView:
        """The one live pod with source address `ip`; a clear error otherwise.

        Host-network pods share the node's address, so a request from it (or from any address
        no pod has) never gets a pod's identity.
        """
        matches = self.cache.by("ip", ip)
        host = [p for p in matches if p.host_network]
        live = [p for p in matches if p.phase in LIVE_PHASES and not p.host_network]
        if host and not live:
            raise FailedPrecondition(
                f"requests from {ip} come from the node's own network (host-network pods such "
                f"as {host[0].ref}): no pod identity is given to them; run the pod without "
                "hostNetwork, or use /host/token/ from a node component"
            )
        if not live:
            raise NotFound(
                f"no running or pending pod on this node has the address {ip}; pod identity "
                "is only for pods on this node's pod network"
            )
        if len(live) > 1:
            names = ", ".join(p.ref for p in live)
            raise FailedPrecondition(
                f"several live pods on this node have the address {ip} ({names}); refusing to "
                "guess which one is calling"
            )
        return live[0]
