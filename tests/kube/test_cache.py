"""The watch-fed cache against a real API server: list then watch, selectors, projections,
indexes, change callbacks, relist on 410 Gone, reconnect after a dropped watch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube import Client
from lightkube.config.kubeconfig import SingleConfig

from devstack.cluster.apiserver import ApiServer
from kube.cache import Change, ChangeType, WatchCache
from kube.client import load_config, make_client
from kube.resources import Pod


@dataclass(frozen=True)
class PodView:
    namespace: str
    name: str
    uid: str
    ip: str
    phase: str


def project(raw: Mapping[str, Any]) -> PodView | None:
    meta, status = raw["metadata"], raw.get("status") or {}
    return PodView(
        meta["namespace"], meta["name"], meta["uid"], status.get("podIP", ""),
        status.get("phase", ""),
    )  # fmt: skip


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def pod(name: str, node: str, ns: str = "default", labels: dict[str, str] | None = None) -> str:
    import json

    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    })  # fmt: skip


@pytest.fixture(scope="module")
def config(apiserver: ApiServer) -> SingleConfig:
    return load_config(apiserver.kubeconfig)


@pytest.fixture(scope="module")
def client(config: SingleConfig) -> Client:
    return make_client(config)


def set_ip(api: ApiServer, ns: str, name: str, ip: str, phase: str = "Running") -> None:
    import json

    api.kubectl(
        "patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"podIP": ip, "phase": phase}}),
    )  # fmt: skip


@pytest.fixture
def namespace(apiserver: ApiServer, request: pytest.FixtureRequest) -> Iterator[str]:
    ns = request.node.name.replace("_", "-")[:50].lower()
    apiserver.kubectl("create", "namespace", ns)
    yield ns
    apiserver.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_lists_then_follows_only_the_selected_node_and_indexes_by_ip(
    apiserver: ApiServer, config: SingleConfig, namespace: str
) -> None:
    apiserver.kubectl("apply", "-f", "-", input=pod("before", "node-a", namespace))
    apiserver.kubectl("apply", "-f", "-", input=pod("elsewhere", "node-b", namespace))
    seen: list[Change[PodView]] = []
    cache = WatchCache(
        config, Pod, project, namespace=namespace, fields={"spec.nodeName": "node-a"},
        indexes={"ip": lambda p: [p.ip] if p.ip else []}, on_change=seen.append,
    ).start()  # fmt: skip
    try:
        assert cache.wait_synced(30)
        assert [p.name for p in cache.items()] == ["before"]
        apiserver.kubectl("apply", "-f", "-", input=pod("after", "node-a", namespace))
        set_ip(apiserver, namespace, "after", "10.1.0.7")
        eventually(lambda: bool(cache.by("ip", "10.1.0.7")))
        assert cache.by("ip", "10.1.0.7")[0].name == "after"
        assert cache.get(namespace, "elsewhere") is None
        apiserver.kubectl("delete", "pod", "after", "-n", namespace, "--grace-period=0", "--force")
        eventually(lambda: cache.get(namespace, "after") is None)
        assert cache.by("ip", "10.1.0.7") == []
        kinds = [(c.type, c.key[1]) for c in seen]
        assert kinds[0] == (ChangeType.ADDED, "before")
        assert (ChangeType.ADDED, "after") in kinds
        assert kinds[-1] == (ChangeType.DELETED, "after")
    finally:
        cache.stop()


def test_relists_after_410_gone_and_reports_what_changed_meanwhile(
    apiserver: ApiServer, config: SingleConfig, namespace: str
) -> None:
    seen: list[Change[PodView]] = []
    gate = threading.Event()
    gate.set()

    def factory(c: SingleConfig) -> Client:
        gate.wait(60)  # while closed, the cache cannot reconnect: it falls behind
        return make_client(c, timeout=30)

    cache = WatchCache(
        config, Pod, project, namespace=namespace, on_change=seen.append,
        client_factory=factory,
    ).start()  # fmt: skip
    try:
        apiserver.kubectl("apply", "-f", "-", input=pod("kept", "n", namespace))
        apiserver.kubectl("apply", "-f", "-", input=pod("gone", "n", namespace))
        assert cache.wait_synced(30)
        eventually(lambda: len(cache) == 2)
        # Drop the watch and hold the reconnect while history moves on and is compacted away.
        gate.clear()
        cache._reset_client()
        apiserver.kubectl("delete", "pod", "gone", "-n", namespace, "--grace-period=0", "--force")
        apiserver.kubectl("apply", "-f", "-", input=pod("new", "n", namespace))
        for i in range(3):  # unrelated writes push the revision past the cache's version
            apiserver.kubectl("create", "configmap", f"filler-{i}", "-n", namespace)
        apiserver.compact_etcd()
        gate.set()
        eventually(lambda: cache.get(namespace, "new") is not None, 60)
        eventually(lambda: cache.get(namespace, "gone") is None, 60)
        assert cache.stats.gone >= 1 and cache.stats.lists >= 2
        names = {(c.type, c.key[1]) for c in seen}
        assert (ChangeType.DELETED, "gone") in names and (ChangeType.ADDED, "new") in names
    finally:
        cache.stop()


def test_after_stop_nothing_is_applied_or_reported(
    apiserver: ApiServer, config: SingleConfig, namespace: str
) -> None:
    seen: list[Change[PodView]] = []
    cache = WatchCache(config, Pod, project, namespace=namespace, on_change=seen.append).start()
    assert cache.wait_synced(30)
    cache.stop(timeout=1)
    apiserver.kubectl("apply", "-f", "-", input=pod("late", "n", namespace))
    time.sleep(1)  # an event that still arrives must be dropped, not applied
    assert cache.get(namespace, "late") is None and seen == []


def test_a_failing_callback_does_not_stop_the_cache(
    apiserver: ApiServer, config: SingleConfig, namespace: str
) -> None:
    def broken(change: Change[PodView]) -> None:
        raise RuntimeError("consumer bug")

    cache = WatchCache(config, Pod, project, namespace=namespace, on_change=broken).start()
    try:
        assert cache.wait_synced(30)
        apiserver.kubectl("apply", "-f", "-", input=pod("one", "n", namespace))
        apiserver.kubectl("apply", "-f", "-", input=pod("two", "n", namespace))
        eventually(lambda: len(cache) == 2)
    finally:
        cache.stop()


def test_projection_returning_none_leaves_objects_out(
    apiserver: ApiServer, config: SingleConfig, namespace: str
) -> None:
    def only_labelled(raw: Mapping[str, Any]) -> PodView | None:
        labels = raw["metadata"].get("labels") or {}
        return project(raw) if "aadpodidbinding" in labels else None

    apiserver.kubectl("apply", "-f", "-", input=pod("plain", "n", namespace))
    apiserver.kubectl(
        "apply", "-f", "-", input=pod("bound", "n", namespace, {"aadpodidbinding": "x"})
    )
    cache = WatchCache(config, Pod, only_labelled, namespace=namespace).start()
    try:
        assert cache.wait_synced(30)
        assert [p.name for p in cache.items()] == ["bound"]
        apiserver.kubectl("label", "pod", "bound", "-n", namespace, "aadpodidbinding-")
        eventually(lambda: len(cache) == 0)
    finally:
        cache.stop()
