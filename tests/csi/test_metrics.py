"""Prometheus metrics and the health endpoint of a running daemon, as a scraper sees them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.harness.daemon import DaemonProcess
from driver.csi.proto import csi_pb2


def samples(daemon: DaemonProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, from a real scrape of /metrics."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(daemon.metrics()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(daemon: DaemonProcess, name: str, **labels: str) -> float:
    return samples(daemon).get((name, frozenset(labels.items())), 0.0)


def healthz(daemon: DaemonProcess) -> int:
    url = f"http://127.0.0.1:{daemon.metrics_port}/healthz"
    return requests.get(url, timeout=10).status_code


def test_metrics_count_operations_vault_and_token_requests_and_mounted_volumes(
    daemon: DaemonProcess,
) -> None:
    target = daemon.target("metrics")
    attrs = daemon.pod_attributes(
        keyvaultobjectnames="secret1;key1;cert1", keyvaultobjecttypes="secret;key;cert"
    )
    daemon.node.NodePublishVolume(daemon.publish_request("csi-m1", target, attrs), timeout=30)
    assert value(daemon, "kv_driver_volumes_mounted", source="csi") == 1

    missing = daemon.pod_attributes(keyvaultobjectnames="no-such-secret")
    with pytest.raises(grpc.RpcError) as err:
        daemon.node.NodePublishVolume(
            daemon.publish_request("csi-m2", daemon.target("metrics-404"), missing), timeout=30
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    daemon.node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id="csi-m1", target_path=str(target)),
        timeout=30,
    )

    ops = "kv_driver_operations_total"
    assert value(daemon, ops, operation="publish", source="csi", result="success") == 1
    assert value(daemon, ops, operation="publish", source="csi", result="NOT_FOUND") == 1
    assert value(daemon, ops, operation="unpublish", source="csi", result="success") == 1
    durations = "kv_driver_operation_duration_seconds_count"
    assert value(daemon, durations, operation="publish", source="csi", result="success") == 1
    assert value(daemon, durations, operation="unpublish", source="csi", result="success") == 1

    kv = "kv_driver_keyvault_requests_total"
    assert value(daemon, kv, vault="testkv", operation="secret.get", status="200") == 1
    assert value(daemon, kv, vault="testkv", operation="key.get", status="200") == 1
    assert value(daemon, kv, vault="testkv", operation="certificate.get", status="200") == 1
    assert value(daemon, kv, vault="testkv", operation="secret.get", status="404") == 1
    kv_seconds = "kv_driver_keyvault_request_duration_seconds_count"
    assert value(daemon, kv_seconds, vault="testkv", operation="secret.get") == 2

    assert value(daemon, "kv_driver_token_requests_total", kind="nmi", status="200") >= 1
    assert value(daemon, "kv_driver_volumes_mounted", source="csi") == 0


def test_throttled_vault_requests_are_counted_by_status(
    start_daemon: Callable[..., DaemonProcess], clean_faults: Any
) -> None:
    daemon = start_daemon("--request-timeout", "1s")
    clean_faults.fault(vault="testkv", endpoint="keyvault", rate_429=1.0, retry_after=1)
    with pytest.raises(grpc.RpcError) as err:
        daemon.node.NodePublishVolume(
            daemon.publish_request("csi-t1", daemon.target("t"), daemon.pod_attributes()),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    kv = "kv_driver_keyvault_requests_total"
    assert value(daemon, kv, vault="testkv", operation="secret.get", status="429") >= 1
    ops = "kv_driver_operations_total"
    assert value(daemon, ops, operation="publish", source="csi", result="RESOURCE_EXHAUSTED") == 1


def test_healthz_is_200_while_the_grpc_server_answers_probe(shared_daemon: DaemonProcess) -> None:
    assert healthz(shared_daemon) == 200
    url = f"http://127.0.0.1:{shared_daemon.metrics_port}/nothing-here"
    assert requests.get(url, timeout=10).status_code == 404


def test_healthz_is_503_when_the_grpc_socket_cannot_be_reached(daemon: DaemonProcess) -> None:
    # Without its socket file nobody (kubelet included) can reach the plugin: not healthy.
    # (A fresh daemon: this one stays broken.)
    daemon.csi_socket.unlink()
    assert healthz(daemon) == 503
