"""MIC against the real API server and the devstack's Resource Manager: what an operator sees
in AzureAssignedIdentities, Events and on the VMs and scale sets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.cluster.apiserver import ApiServer
from devstack.harness.mic import MicWorld, eventually, start_devstack


@pytest.fixture
def world(
    apiserver: ApiServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[MicWorld]:
    ds = start_devstack(tmp_path / "ds")
    w = MicWorld.make(
        apiserver, ds, lease_name=f"mic-{request.node.name[5:40]}".replace("_", "-").rstrip("-")
    )
    try:
        yield w
    finally:
        w.close()
        w.cleanup()
        ds.stop()


def test_a_labelled_pod_gets_its_identity_on_its_vm(world: MicWorld) -> None:
    ns = world.namespace("basic")
    world.identity(ns, "reader", "id-0")
    world.binding(ns, "reader-binding", "reader", "reader")
    world.pod(ns, "app", "vm-1", "reader")
    world.start_mic()
    eventually(lambda: world.states(ns) == {("app", "reader"): "Assigned"}, what="Assigned")
    assert world.attached("vm-1") == {"id-0"}


def _patches(world: MicWorld, kind: str = "vm") -> int:
    return world.ds.count(operation=f"{kind}.patch", status=200)


def test_pods_of_one_scale_set_share_one_identity_set_and_one_patch(world: MicWorld) -> None:
    ns = world.namespace("vmss")
    for n in (1, 2, 3):
        world.identity(ns, f"ident-{n}", f"id-{n}")
        world.binding(ns, f"bind-{n}", f"ident-{n}", "app")
    world.pod(ns, "a", "ss-0-0", "app")
    world.pod(ns, "b", "ss-0-1", "app")
    world.start_mic()
    expected = {(p, f"ident-{n}"): "Assigned" for p in ("a", "b") for n in (1, 2, 3)}
    eventually(lambda: world.states(ns) == expected, what="Assigned on the scale set")
    assert world.attached("ss-0") == {"id-1", "id-2", "id-3"}
    assert _patches(world, "vmss") == 1, "all changes for a scale set go in one PATCH"
    reasons = {r for r, _ in world.events(ns, "bind-1")}
    assert "IdentityAssigned" in reasons


def test_an_identity_still_used_on_the_scale_set_is_not_removed(world: MicWorld) -> None:
    ns = world.namespace("inuse")
    world.identity(ns, "shared", "id-0")
    world.binding(ns, "shared", "shared", "shared")
    world.pod(ns, "one", "ss-0-0", "shared")
    world.pod(ns, "two", "ss-0-1", "shared")
    world.start_mic()
    eventually(
        lambda: len(world.states(ns)) == 2 and set(world.states(ns).values()) == {"Assigned"}
    )
    world.delete_pod(ns, "one")
    eventually(lambda: set(world.states(ns)) == {("two", "shared")}, what="one removed")
    assert world.attached("ss-0") == {"id-0"}, "pod two on the same scale set still needs it"
    world.delete_pod(ns, "two")
    eventually(lambda: not world.states(ns), what="all removed")
    eventually(lambda: world.attached("ss-0") == set(), what="detached")


def test_removal_keeps_the_system_identity_and_identities_mic_did_not_assign(
    world: MicWorld,
) -> None:
    ns = world.namespace("keep")
    world.identity(ns, "mine", "id-1")
    world.binding(ns, "mine", "mine", "mine")
    world.pod(ns, "p", "vm-0", "mine")
    world.start_mic()
    eventually(lambda: world.states(ns) == {("p", "mine"): "Assigned"})
    assert world.attached("vm-0") == {"preexisting", "id-1"}
    world.delete_pod(ns, "p")
    eventually(lambda: world.attached("vm-0") == {"preexisting"}, what="id-1 detached")
    assert world.ds.arm_resource("vm-0")["system_assigned"], "the VM's own identity stays on"
    eventually(lambda: not world.assigned(ns), what="AzureAssignedIdentity gone")


def test_an_identity_arm_refuses_is_reported_and_the_others_are_assigned(world: MicWorld) -> None:
    ns = world.namespace("refused")
    world.identity(ns, "denied", "id-refused")
    world.binding(ns, "denied", "denied", "app")
    world.identity(ns, "granted", "id-2")
    world.binding(ns, "granted", "granted", "app")
    world.pod(ns, "p", "vm-1", "app")
    world.start_mic()
    eventually(lambda: world.states(ns).get(("p", "granted")) == "Assigned")
    assert world.attached("vm-1") == {"id-2"}
    assert world.states(ns)[("p", "denied")] == "Created", "not usable: never Assigned"
    events = eventually(
        lambda: [m for r, m in world.events(ns, "denied") if r == "IdentityRefused"]
    )
    assert "Managed Identity Operator" in events[0]


def test_an_invalid_identity_is_reported_on_its_binding_and_skipped(world: MicWorld) -> None:
    ns = world.namespace("invalid")
    world.identity(ns, "broken", "id-1", resource_id="not-a-resource-id")
    world.binding(ns, "broken", "broken", "app")
    world.identity(ns, "fine", "id-3")
    world.binding(ns, "fine", "fine", "app")
    world.pod(ns, "p", "vm-1", "app")
    world.start_mic()
    eventually(lambda: world.states(ns) == {("p", "fine"): "Assigned"})
    messages = eventually(
        lambda: [m for r, m in world.events(ns, "broken") if r == "InvalidIdentity"]
    )
    assert "spec.resourceID" in messages[0]


def test_namespaced_by_default_and_names_never_collide_across_namespaces(
    world: MicWorld,
) -> None:
    a, b, pods = world.namespace("team-a"), world.namespace("team-b"), world.namespace("apps")
    for ns, ident in ((a, "id-1"), (b, "id-2")):
        world.identity(ns, "same-name", ident)
        world.binding(ns, "same-name", "same-name", "shared-selector")
    world.pod(pods, "p", "vm-1", "shared-selector")
    world.pod(a, "local", "vm-1", "shared-selector")
    mic = world.start_mic()
    eventually(lambda: world.states(a) == {("local", "same-name"): "Assigned"})
    mic.force_resync()
    eventually(lambda: mic.reconciler.stats.cycles >= 2)
    assert world.assigned(pods) == [], "bindings of other namespaces do not apply by default"
    world.replica(mic).close()
    world.replicas.clear()

    world.start_mic("cluster-wide", namespaced=False)
    objects = eventually(
        lambda: (found := world.assigned(pods)) and len(found) == 2
        and all(o.state.value == "Assigned" for o in found) and found
    )  # fmt: skip
    assert {o.identity.meta.namespace for o in objects} == {a, b}
    assert len({o.meta.name for o in objects}) == 2, "one object per identity namespace"
    assert all(o.meta.namespace == pods for o in objects), "written in the pod's namespace"
    assert world.attached("vm-1") == {"id-1", "id-2"}


def test_a_pod_an_exception_matches_gets_no_identity(world: MicWorld) -> None:
    ns = world.namespace("excepted")
    world.identity(ns, "x", "id-4")
    world.binding(ns, "x", "x", "app")
    world.exception(ns, "node-identity", {"role": "system"})
    world.pod(ns, "system-pod", "vm-1", "app", labels={"role": "SYSTEM"})
    world.pod(ns, "user-pod", "vm-1", "app")
    world.start_mic()
    eventually(lambda: world.states(ns) == {("user-pod", "x"): "Assigned"})


def test_service_principal_identities_are_assigned_without_arm(world: MicWorld) -> None:
    ns = world.namespace("sp")
    world.identity(ns, "sp", "sp-id", type=1)
    world.binding(ns, "sp", "sp", "sp")
    world.pod(ns, "p", "vm-1", "sp")
    world.start_mic()
    eventually(lambda: world.states(ns) == {("p", "sp"): "Assigned"})
    assert _patches(world) == 0 and world.ds.count(operation="vm.get") == 0


def test_a_resync_that_finds_nothing_changed_calls_nothing(world: MicWorld) -> None:
    ns = world.namespace("idle")
    for n in (0, 1):
        world.identity(ns, f"i{n}", f"id-{n}")
        world.binding(ns, f"b{n}", f"i{n}", "idle")
    for p in range(6):
        world.pod(ns, f"p{p}", ("vm-1", "ss-0-0", "ss-0-1")[p % 3], "idle")
    mic = world.start_mic()
    eventually(
        lambda: len(world.states(ns)) == 12 and set(world.states(ns).values()) == {"Assigned"}
    )
    eventually(lambda: not mic.reconciler.pending)
    writes, arm_before = mic.writer.stats.total, world.ds.count(vault=world.ds.subscription_id)
    for _ in range(6):
        cycles = mic.reconciler.stats.cycles
        mic.force_resync()
        eventually(lambda: mic.reconciler.stats.cycles > cycles)  # noqa: B023 - waited for here
    assert mic.writer.stats.total == writes, "no API write"
    assert world.ds.count(vault=world.ds.subscription_id) == arm_before, "no ARM call"


def test_an_event_recomputes_only_the_pods_it_touches(world: MicWorld) -> None:
    ns = world.namespace("incremental")
    world.identity(ns, "i", "id-0")
    world.binding(ns, "b", "i", "one")
    world.identity(ns, "j", "id-1")
    world.binding(ns, "c", "j", "two")
    for p in range(10):
        world.pod(ns, f"p{p}", "vm-1", "one")
    mic = world.start_mic()
    eventually(
        lambda: len(world.states(ns)) == 10 and set(world.states(ns).values()) == {"Assigned"}
    )
    eventually(lambda: not mic.reconciler.pending)
    before = mic.reconciler.stats.pods_recomputed
    world.relabel(ns, "p3", "two")
    eventually(lambda: world.states(ns).get(("p3", "j")) == "Assigned")
    eventually(lambda: ("p3", "i") not in world.states(ns))
    eventually(lambda: not mic.reconciler.pending)
    assert mic.reconciler.stats.pods_recomputed - before <= 6, "only p3 (and its own echoes)"
    assert world.attached("vm-1") == {"id-0", "id-1"}


def test_throttling_is_waited_out_per_subscription(world: MicWorld) -> None:
    ns = world.namespace("throttled")
    world.identity(ns, "i", "id-2")
    world.binding(ns, "b", "i", "t")
    world.pod(ns, "p", "vm-1", "t")
    world.pod(ns, "q", "ss-0-0", "t")
    world.ds.fault(subscription=world.ds.subscription_id, endpoint="arm", rate_429=1.0,
                   retry_after=1, count=3)  # fmt: skip
    mic = world.start_mic()
    eventually(
        lambda: set(world.states(ns).values()) == {"Assigned"} and len(world.states(ns)) == 2
    )
    assert mic.arm.stats.throttled >= 1
    assert world.attached("vm-1") == {"id-2"} and world.attached("ss-0") == {"id-2"}


def test_immutable_identities_are_never_removed(world: MicWorld) -> None:
    ns = world.namespace("immutable")
    world.identity(ns, "keep", "id-3")
    world.binding(ns, "keep", "keep", "k")
    world.pod(ns, "p", "vm-1", "k")
    world.start_mic(immutable_identities=(world.ds.client_id("id-3"),))
    eventually(lambda: world.states(ns) == {("p", "keep"): "Assigned"})
    world.delete_pod(ns, "p")
    eventually(lambda: not world.assigned(ns))
    assert world.attached("vm-1") == {"id-3"}


def test_an_identity_removed_by_hand_is_put_back(world: MicWorld) -> None:
    ns = world.namespace("byhand")
    world.identity(ns, "i", "id-4")
    world.binding(ns, "b", "i", "h")
    world.pod(ns, "p", "vm-1", "h")
    mic = world.start_mic()
    eventually(lambda: world.states(ns) == {("p", "i"): "Assigned"})
    world.ds.change_identities_by_hand("vm-1", remove=["id-4"])
    assert mic.reconciler.verify() == 1
    assert world.attached("vm-1") == {"id-4"}


def test_a_leader_killed_mid_cycle_loses_nothing(world: MicWorld) -> None:
    ns = world.namespace("failover")
    for n in (0, 1, 2):
        world.identity(ns, f"i{n}", f"id-{n}")
        world.binding(ns, f"b{n}", f"i{n}", "f")
    nodes = ("vm-1", "ss-0-0", "ss-0-1")
    for p in range(6):
        world.pod(ns, f"p{p}", nodes[p % 3], "f")
    # Every ARM request takes a while, so the leader is caught between intent and outcome.
    world.ds.fault(subscription=world.ds.subscription_id, endpoint="arm", latency_ms=2500)
    first = world.start_mic("mic-a")
    standby = world.start_mic("mic-b", wait_leader=False)
    eventually(lambda: "Created" in world.states(ns).values(), what="intent written")
    assert not standby.active.is_set(), "one leader at a time"
    world.replica(first).kill()
    world.ds.clear_faults()
    eventually(standby.active.is_set, what="the standby takes over")
    expected = {(f"p{p}", f"i{n}"): "Assigned" for p in range(6) for n in (0, 1, 2)}
    eventually(lambda: world.states(ns) == expected, what="every assignment finished")
    assert len(world.assigned(ns)) == 18, "no duplicate AzureAssignedIdentity"
    assert world.attached("vm-1") == world.attached("ss-0") == {"id-0", "id-1", "id-2"}
    for p in range(6):
        world.delete_pod(ns, f"p{p}")
    eventually(lambda: not world.assigned(ns), what="all removed")
    eventually(lambda: world.attached("vm-1") == world.attached("ss-0") == set(), what="no leak")


def test_more_than_150_changes_go_in_as_few_patches_as_the_limit_allows(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    ds = start_devstack(tmp_path / "ds", vms=2, scale_sets=1, identities=160)
    world = MicWorld.make(apiserver, ds, lease_name="mic-batch")
    ns = world.namespace("batch")
    try:
        for n in range(160):
            world.identity(ns, f"i{n}", f"id-{n}")
            world.binding(ns, f"b{n}", f"i{n}", "many")
        world.pod(ns, "p", "vm-1", "many")
        world.start_mic()
        eventually(
            lambda: len(world.states(ns)) == 160
            and set(world.states(ns).values()) == {"Assigned"},
            timeout=120,
        )  # fmt: skip
        assert len(world.attached("vm-1")) == 160
        assert ds.count(operation="vm.patch", status=200) == 2, "150 + 10"
    finally:
        world.close()
        world.cleanup()
        ds.stop()


def test_deleting_the_binding_unassigns_when_nothing_else_needs_it(world: MicWorld) -> None:
    from podidentity.crds.resources import AzureIdentityBindingResource

    ns = world.namespace("unbind")
    world.identity(ns, "i", "id-1")
    world.binding(ns, "first", "i", "one")
    world.binding(ns, "second", "i", "two")
    world.pod(ns, "a", "vm-1", "one")
    world.pod(ns, "b", "vm-1", "two")
    world.start_mic()
    eventually(lambda: world.states(ns) == {("a", "i"): "Assigned", ("b", "i"): "Assigned"})
    world.client.delete(AzureIdentityBindingResource, "first", namespace=ns)
    eventually(lambda: world.states(ns) == {("b", "i"): "Assigned"}, what="a's object removed")
    assert world.attached("vm-1") == {"id-1"}, "pod b still needs the identity on vm-1"
    world.client.delete(AzureIdentityBindingResource, "second", namespace=ns)
    eventually(lambda: not world.states(ns), what="b's object removed")
    eventually(lambda: world.attached("vm-1") == set(), what="detached")
