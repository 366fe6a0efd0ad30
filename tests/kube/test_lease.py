"""Leader election on a coordination.k8s.io/v1 Lease against a real API server."""

from __future__ import annotations

import time
from collections.abc import Callable

from lightkube.resources.coordination_v1 import Lease

from devstack.cluster.apiserver import ApiServer
from kube.client import load_config, make_client
from kube.lease import LeaderElector, LeaseTimings

TIMINGS = LeaseTimings(duration=4.0, renew_deadline=3.0, retry=0.3)


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def _electors(api: ApiServer, name: str) -> tuple[LeaderElector, LeaderElector]:
    config = load_config(api.kubeconfig)
    return tuple(  # type: ignore[return-value]
        LeaderElector(make_client(config), "default", name, who, TIMINGS).start()
        for who in ("replica-a", "replica-b")
    )


def test_one_replica_leads_and_the_other_takes_over_when_it_stops(apiserver: ApiServer) -> None:
    a, b = _electors(apiserver, "lease-crash")
    try:
        eventually(lambda: a.is_leader or b.is_leader)
        leader, other = (a, b) if a.is_leader else (b, a)
        time.sleep(1.0)
        assert not other.is_leader
        leader.stop(release=False)  # a crash: the lease must expire first
        eventually(lambda: other.is_leader)
    finally:
        a.stop()
        b.stop()


def test_a_released_lease_is_taken_over_without_waiting_for_it_to_expire(
    apiserver: ApiServer,
) -> None:
    a, b = _electors(apiserver, "lease-release")
    try:
        eventually(lambda: a.is_leader or b.is_leader)
        leader, other = (a, b) if a.is_leader else (b, a)
        leader.stop(release=True)
        client = make_client(load_config(apiserver.kubeconfig))
        lease = client.get(Lease, "lease-release", namespace="default")
        assert lease.spec is not None and lease.spec.holderIdentity in (None, other.identity)
        eventually(lambda: other.is_leader, timeout=3.0)
    finally:
        a.stop()
        b.stop()


def test_a_leader_whose_lease_is_taken_stops_acting(apiserver: ApiServer) -> None:
    config = load_config(apiserver.kubeconfig)
    stopped: list[bool] = []
    elector = LeaderElector(
        make_client(config), "default", "lease-taken", "replica-a", TIMINGS,
        on_stopped=lambda: stopped.append(True),
    ).start()  # fmt: skip
    try:
        eventually(lambda: elector.is_leader)
        client = make_client(config)
        lease = client.get(Lease, "lease-taken", namespace="default")
        assert lease.spec is not None
        lease.spec.holderIdentity = "intruder"
        lease.spec.leaseDurationSeconds = 3600
        client.replace(lease)
        eventually(lambda: not elector.is_leader, timeout=TIMINGS.renew_deadline + 5)
        assert elector.lost.is_set() and stopped == [True]
    finally:
        elector.stop(release=False)
