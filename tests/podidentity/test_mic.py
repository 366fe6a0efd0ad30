"""MIC against the real API server and the devstack's Resource Manager: what an operator sees
in AzureAssignedIdentities, Events and on the VMs and scale sets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.cluster.apiserver import ApiServer
from tests.podidentity.micworld import MicWorld, eventually, start_devstack


@pytest.fixture
def world(apiserver: ApiServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MicWorld]:
    ds = start_devstack(tmp_path / "ds")
    w = MicWorld.make(apiserver, ds, lease_name=f"mic-{request.node.name[:40]}".replace("_", "-"))
    made: list[str] = []
    orig = w.namespace

    def namespace(name: str) -> str:
        made.append(name)
        return orig(name)

    w.namespace = namespace  # type: ignore[method-assign]
    try:
        yield w
    finally:
        w.close()
        w.cleanup(made)
        ds.stop()


def test_a_labelled_pod_gets_its_identity_on_its_vm(world: MicWorld) -> None:
    ns = world.namespace("basic")
    world.identity(ns, "reader", "id-0")
    world.binding(ns, "reader-binding", "reader", "reader")
    world.pod(ns, "app", "vm-1", "reader")
    world.start_mic()
    eventually(lambda: world.states(ns) == {("app", "reader"): "Assigned"}, what="Assigned")
    assert world.attached("vm-1") == {"id-0"}
