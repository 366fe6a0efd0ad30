"""Events: written once, repeated ones aggregated into the same object's count."""

from __future__ import annotations

import time

from lightkube.resources.core_v1 import Event

from devstack.cluster.apiserver import ApiServer
from kube.client import load_config, make_client
from kube.events import WARNING, EventRecorder, Ref


def test_repeated_events_are_aggregated_not_duplicated(apiserver: ApiServer) -> None:
    client = make_client(load_config(apiserver.kubeconfig))
    recorder = EventRecorder(client, "kv-test", "node-a")
    ref = Ref("v1", "Pod", "default", "app-0", "uid-1")
    for _ in range(3):
        recorder.record(ref, "IdentityMissing", "no identity assigned yet", WARNING)
    recorder.record(ref, "IdentityAssigned", "identity id-a assigned")
    recorder.flush()
    deadline = time.monotonic() + 10
    while True:
        events = [
            e for e in client.list(Event, namespace="default")
            if e.involvedObject.name == "app-0"
        ]  # fmt: skip
        if len(events) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    by_reason = {e.reason: e for e in events}
    assert set(by_reason) == {"IdentityMissing", "IdentityAssigned"}
    assert by_reason["IdentityMissing"].count == 3
    assert by_reason["IdentityMissing"].type == "Warning"
    assert by_reason["IdentityMissing"].source is not None
    assert by_reason["IdentityMissing"].source.component == "kv-test"
    recorder.close()
