"""Volume attributes as kubelet hands them to the driver: CSI `volume_context` maps and the
FlexVolume options map, for the seed world's pods.

Every builder takes `extra` overrides; a value of None removes the key (how tests build a request
that lacks one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from devstack.harness import world

Overrides = Mapping[str, str | None]


def _apply(base: dict[str, str], extra: Overrides | None) -> dict[str, str]:
    merged: dict[str, str | None] = {**base, **(extra or {})}
    return {k: v for k, v in merged.items() if v is not None}


def object_lists(
    names: Iterable[str], types: Iterable[str] | None = None, versions: Iterable[str] | None = None
) -> dict[str, str]:
    """The azure/kv list style: `keyvaultobjectnames` and friends, `;`-separated."""
    names = list(names)
    kinds = list(types) if types is not None else ["secret"] * len(names)
    lists = {"keyvaultobjectnames": ";".join(names), "keyvaultobjecttypes": ";".join(kinds)}
    if versions is not None:
        lists["keyvaultobjectversions"] = ";".join(versions)
    return lists


def csi_attributes(
    nmi_port: int,
    names: Iterable[str] = (world.SECRET,),
    *,
    types: Iterable[str] | None = None,
    versions: Iterable[str] | None = None,
    pod: str = world.CSI_POD,
    namespace: str = world.NAMESPACE,
    uid: str = world.POD_UID,
    ephemeral: bool = True,
    extra: Overrides | None = None,
) -> dict[str, str]:
    """CSI volume attributes of a pod in the seed world using pod identity (NMI at `nmi_port`),
    with the pod keys kubelet adds (`podInfoOnMount`) and, for an inline volume, `ephemeral`."""
    attrs = {
        "usePodIdentity": "true",
        "nmiport": str(nmi_port),
        "keyvaultName": world.VAULT,
        "tenantId": world.TENANT,
        "csi.storage.k8s.io/pod.name": pod,
        "csi.storage.k8s.io/pod.namespace": namespace,
        "csi.storage.k8s.io/pod.uid": uid,
    }
    if ephemeral:
        attrs["csi.storage.k8s.io/ephemeral"] = "true"
    attrs.update(object_lists(names, types, versions))
    return _apply(attrs, extra)


def flex_pod_options(
    nmi_port: int,
    *,
    uid: str,
    pod: str = world.FLEX_POD,
    namespace: str = world.NAMESPACE,
    extra: Overrides | None = None,
) -> dict[str, str]:
    """The smallest azure/kv options map for a seed pod using pod identity: the pod's own
    options plus the pod keys kubelet adds."""
    options = {
        "usepodidentity": "true",
        "nmiport": str(nmi_port),
        "keyvaultname": world.VAULT,
        "tenantid": world.TENANT,
        "kubernetes.io/pod.name": pod,
        "kubernetes.io/pod.namespace": namespace,
        "kubernetes.io/pod.uid": uid,
    }
    return _apply(options, extra)


def kubelet_keys(
    *, volume: str = "secrets", readwrite: str = "rw", service_account: str = "default"
) -> dict[str, str]:
    """The keys kubelet adds to every FlexVolume options map besides the pod's name and uid."""
    return {
        "kubernetes.io/fsType": "",
        "kubernetes.io/pvOrVolumeName": volume,
        "kubernetes.io/readwrite": readwrite,
        "kubernetes.io/serviceAccount.name": service_account,
    }


def flex_options(
    nmi_port: int,
    names: Iterable[str] = (world.SECRET,),
    *,
    uid: str,
    types: Iterable[str] | None = None,
    pod: str = world.FLEX_POD,
    volume: str = "secrets",
    readwrite: str = "rw",
    extra: Overrides | None = None,
) -> dict[str, str]:
    """The full options map kubelet hands the azure/kv shim for a pod-identity volume."""
    options = flex_pod_options(nmi_port, uid=uid, pod=pod)
    options.update(object_lists(names, types))
    options.update(kubelet_keys(volume=volume, readwrite=readwrite))
    return _apply(options, extra)


def go_json(options: Mapping[str, str]) -> str:
    """The options as kubelet marshals them with Go's encoding/json: sorted keys, no spaces."""
    return json.dumps(dict(options), sort_keys=True, separators=(",", ":"))
