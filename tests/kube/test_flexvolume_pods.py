"""Issue 14, item 1 (and the Event of item 12) through the front doors, with a real API server
and no kubelet: the node plugin process verifies a FlexVolume pod's identity against this node's
pods, and tells a pod through an Event when a republish kept its old files.

A pod's `flexVolume.options` are applied by kubelet after the `kubernetes.io/pod.*` keys it
adds, so here the options map is exactly what kubelet would hand the shim for a pod that wrote
`kubernetes.io/pod.name: nginx-flex-kv-podid` (the seed pod NMI gives an identity to)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from devstack.client import Devstack
from devstack.cluster.apiserver import ApiServer
from devstack.harness import world
from devstack.harness.attributes import flex_options, go_json
from devstack.harness.csi_requests import publish_request, status_of
from devstack.harness.daemon import DaemonProcess
from devstack.harness.node import flex_target
from devstack.harness.shim import ShimResult, run_shim
from tests.fixtures.daemon import StartDaemon

OTHER_NODE = "some-other-node"


def create_pod(
    api: ApiServer,
    name: str,
    *,
    namespace: str = world.NAMESPACE,
    node: str = world.NODE_ID,
    fs_group: int | None = None,
) -> str:
    """Create a pod bound to `node` (no scheduler, no kubelet: it only exists); its uid."""
    spec: dict[str, object] = {
        "nodeName": node,
        "serviceAccountName": "default",
        "containers": [{"name": "c", "image": "busybox"}],
    }
    if fs_group is not None:
        spec["securityContext"] = {"fsGroup": fs_group}
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    api.kubectl("create", "-f", "-", input=json.dumps(manifest))
    uid = api.kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}")
    return uid.stdout.strip()


@pytest.fixture(scope="module")
def seed_pods(apiserver: ApiServer) -> Iterator[dict[str, str]]:
    """The seed FlexVolume pod (NMI knows it) and a tenant pod on this node: name -> uid."""
    uids = {
        world.FLEX_POD: create_pod(apiserver, world.FLEX_POD),
        "tenant": create_pod(apiserver, "tenant"),
        "grouped": create_pod(apiserver, "grouped", fs_group=4321),
    }
    yield uids
    apiserver.kubectl(
        "delete", "pod", "--all", "-n", world.NAMESPACE, "--grace-period=0", "--force"
    )


@pytest.fixture
def api_daemon(
    start_daemon: StartDaemon, apiserver: ApiServer, seed_pods: dict[str, str]
) -> DaemonProcess:
    return start_daemon(
        "--flexvolume-pod-source", "api",
        "--kubeconfig", str(apiserver.kubeconfig),
        "--flexvolume-pod-wait", "2s",
    )  # fmt: skip


def mount(
    daemon: DaemonProcess, uid: str, pod: str, **extra: str | None
) -> tuple[Path, ShimResult]:
    """Mount as kubelet would for `pod` (uid `uid`), with its pod-written options in `extra`."""
    target = flex_target(daemon.root, uid, "kv", create=True)
    options = flex_options(daemon.devstack.nmi_port, uid=uid, pod=pod, extra=dict(extra))
    result = run_shim(
        ["mount", str(target), go_json(options)],
        socket=daemon.flex_socket,
        log=daemon.root / "flex.log",
    )
    return target, result


def nmi_requests(daemon: DaemonProcess) -> int:
    total = 0.0
    for line in daemon.metrics().splitlines():
        if line.startswith('kv_driver_token_requests_total{kind="nmi"'):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def test_a_pod_naming_another_pod_in_its_options_is_refused_and_gets_nothing(
    api_daemon: DaemonProcess, seed_pods: dict[str, str]
) -> None:
    # What kubelet hands the shim for pod "tenant" whose options say it is the seed pod.
    target, result = mount(api_daemon, seed_pods["tenant"], "tenant", **{
        "kubernetes.io/pod.name": world.FLEX_POD,
    })  # fmt: skip
    assert result.status == "Failure"
    assert "INVALID_ARGUMENT" in result.message
    assert "kubernetes.io/pod.name" in result.message
    assert "does not match the pod this volume is mounted for" in result.message
    assert world.FLEX_POD not in result.message
    assert list(target.iterdir()) == []
    assert nmi_requests(api_daemon) == 0  # NMI is never asked for an unverified pod


@pytest.mark.parametrize(
    "key, value",
    [
        ("kubernetes.io/pod.namespace", "kube-system"),
        ("Kubernetes.io/Pod.Name", world.FLEX_POD),  # another spelling folds to the same key
        ("csi.storage.k8s.io/pod.name", world.FLEX_POD),  # the CSI spelling is read too
        ("kubernetes.io/serviceAccount.name", "admin"),
        ("kubernetes.io/mounterArgs.FsGroup", "0"),
    ],
)
def test_every_identity_key_a_pod_can_write_is_verified(
    api_daemon: DaemonProcess, seed_pods: dict[str, str], key: str, value: str
) -> None:
    target, result = mount(api_daemon, seed_pods["tenant"], "tenant", **{key: value})
    assert result.status == "Failure"
    assert "INVALID_ARGUMENT" in result.message and key in result.message
    assert list(target.iterdir()) == []


def test_the_seed_pod_mounts_with_its_identity_from_the_api_server(
    api_daemon: DaemonProcess, seed_pods: dict[str, str]
) -> None:
    # The pod's name and namespace are not even needed in the options: the uid decides.
    target, result = mount(api_daemon, seed_pods[world.FLEX_POD], world.FLEX_POD, **{
        "kubernetes.io/pod.name": None, "kubernetes.io/pod.namespace": None,
    })  # fmt: skip
    assert result.status == "Success", result.message
    assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
    assert nmi_requests(api_daemon) >= 1
    unmount = run_shim(
        ["unmount", str(target)], socket=api_daemon.flex_socket, log=api_daemon.root / "flex.log"
    )
    assert unmount.status == "Success"


def test_the_pods_fs_group_comes_from_the_api_server(
    api_daemon: DaemonProcess, seed_pods: dict[str, str]
) -> None:
    # Its own fsGroup, as kubelet passes it, is accepted; the group is the pod's.
    _, result = mount(api_daemon, seed_pods["grouped"], "grouped", **{
        "kubernetes.io/mounterArgs.FsGroup": "4321",
    })  # fmt: skip
    # "grouped" has no identity at NMI: the mount gets as far as NMI, past the verification.
    assert "does not match the pod" not in result.message


def test_a_pod_unknown_on_this_node_gets_a_retryable_error(
    api_daemon: DaemonProcess, apiserver: ApiServer, seed_pods: dict[str, str]
) -> None:
    elsewhere = create_pod(apiserver, f"elsewhere-{uuid.uuid4().hex[:6]}", node=OTHER_NODE)
    for uid in (str(uuid.uuid4()), elsewhere):
        target, result = mount(api_daemon, uid, "elsewhere")
        assert result.status == "Failure"
        assert result.message.startswith("UNAVAILABLE"), result.message
        assert list(target.iterdir()) == []
    assert nmi_requests(api_daemon) == 0


def test_a_pod_created_just_before_its_mount_is_waited_for(
    start_daemon: StartDaemon, apiserver: ApiServer, seed_pods: dict[str, str]
) -> None:
    daemon = start_daemon(
        "--flexvolume-pod-source", "api", "--kubeconfig", str(apiserver.kubeconfig),
    )  # fmt: skip
    # The seed pod is recreated (new uid) right before the mount: the watch catches up.
    apiserver.kubectl(
        "delete", "pod", world.FLEX_POD, "-n", world.NAMESPACE, "--grace-period=0", "--force"
    )
    uid = create_pod(apiserver, world.FLEX_POD)
    seed_pods[world.FLEX_POD] = uid
    target, result = mount(daemon, uid, world.FLEX_POD)
    assert result.status == "Success", result.message
    assert (target / world.SECRET).exists()


def test_api_verification_without_an_api_server_refuses_to_start(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon("--flexvolume-pod-source", "api", wait=False)
    assert daemon.process.wait(timeout=60) == 2
    assert "--flexvolume-pod-source api needs the API server" in daemon.log()


def test_the_unverified_mode_is_announced_at_start(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()  # the harness runs without an API server: kubelet-options
    assert "INSECURE: --flexvolume-pod-source kubelet-options" in daemon.log()


def test_a_republish_that_kept_old_files_is_an_event_on_the_pod(
    start_daemon: StartDaemon, apiserver: ApiServer, devstack: Devstack
) -> None:
    daemon = start_daemon(
        "--rotation-poll-interval", "0", "--kubeconfig", str(apiserver.kubeconfig),
    )  # fmt: skip
    name = f"evt-{uuid.uuid4().hex[:6]}"
    devstack.set_secret(world.VAULT, name, "v1")
    attributes = daemon.pod_attributes(keyvaultobjectnames=name, keyvaultobjecttypes="secret")
    target = daemon.target(f"vol-{name}")
    volume_id = f"vol-{name}"
    daemon.publish(volume_id, target, attributes)
    full = ["get", "list"]
    devstack.set_policy(world.VAULT, "pod-identity", secrets=[], keys=full, certificates=full)
    try:
        request = publish_request(volume_id, target, attributes)
        assert status_of(daemon.node.NodePublishVolume, request)[0] == grpc.StatusCode.OK
    finally:
        devstack.set_policy(world.VAULT, "pod-identity", secrets=full, keys=full, certificates=full)
    assert (target / name).read_text() == "v1"
    deadline = time.monotonic() + 30
    events: list[dict[str, Any]] = []
    while not events and time.monotonic() < deadline:
        listing = apiserver.kubectl("get", "events", "-n", world.NAMESPACE, "-o", "json")
        events = [
            e
            for e in json.loads(listing.stdout)["items"]
            if e["reason"] == "SecretsNotRefreshed"
            and e["involvedObject"]["name"] == world.CSI_POD
            and volume_id in e["message"]
        ]
        time.sleep(0.2)
    assert events, daemon.log()
    event = events[0]
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Pod"
    assert "PERMISSION_DENIED" in str(event["message"])
    daemon.unpublish(volume_id, target)
