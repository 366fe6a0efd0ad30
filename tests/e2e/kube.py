"""Talking to the local cluster the way a user does: kubectl apply, wait, exec, describe."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from devstack.cluster import Cluster
from devstack.cluster.images import APP_IMAGE_SHORT

# PID 1 exits on SIGTERM, so deleting a pod does not wait out its grace period.
SLEEPER = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


def container(name: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "image": APP_IMAGE_SHORT,
        "imagePullPolicy": "Never",
        "command": SLEEPER,
        "volumeMounts": mounts,
    }


def pod(
    name: str,
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    service_account: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 5,
        "containers": [container(name, mounts)],
        "volumes": volumes,
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": name}},
        "spec": spec,
    }


def apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def get(cluster: Cluster, kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def wait_ready(cluster: Cluster, name: str, timeout: int = 240) -> dict[str, Any]:
    """Wait for the pod's Ready condition; on failure the error shows `kubectl describe`."""
    result = cluster.kubectl(
        "wait", "--for=condition=Ready", f"pod/{name}", f"--timeout={timeout}s",
        timeout=timeout + 30, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"pod {name} not Ready:\n{describe(cluster, name)}")
    return get(cluster, "pod", name)


def describe(cluster: Cluster, name: str) -> str:
    return cluster.kubectl("describe", "pod", name, check=False).stdout


def exec_(cluster: Cluster, pod_name: str, *command: str, settle: float = 90.0) -> str:
    """Run a command in the pod. A kubelet that just (re)started answers "pod does not exist"
    until it has synced its pods: that answer is retried for up to `settle` seconds."""
    deadline = time.monotonic() + settle
    while True:
        result = cluster.kubectl("exec", pod_name, "--", *command, timeout=60, check=False)
        if result.returncode == 0:
            return result.stdout
        if "pod does not exist" not in result.stderr or time.monotonic() > deadline:
            raise RuntimeError(
                f"kubectl exec {pod_name} -- {' '.join(command)}: {result.stderr.strip()}"
            )
        time.sleep(1)


def read(cluster: Cluster, pod_name: str, path: str) -> str:
    return exec_(cluster, pod_name, "cat", path)


def delete_pod(cluster: Cluster, name: str, timeout: int = 120) -> None:
    cluster.kubectl(
        "delete", "pod", name, "--ignore-not-found", "--wait=true", f"--timeout={timeout}s",
        timeout=timeout + 30,
    )  # fmt: skip


def events(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    """Events of this pod, not of an earlier pod of the same name (events outlive pods)."""
    uid = get(cluster, "pod", name)["metadata"]["uid"]
    out = cluster.kubectl(
        "get", "events", "-n", "default", "--field-selector",
        f"involvedObject.name={name},involvedObject.uid={uid}", "-o", "json",
    ).stdout  # fmt: skip
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def wait_for(check: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def pod_mounts(cluster: Cluster, uid: str) -> list[str]:
    """Mount points under this pod's kubelet directory (same mount namespace as kubelet)."""
    prefix = str(cluster.kubelet_root / "pods" / uid) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(prefix):
            points.append(point)
    return points
