"""Rotation: Key Vault requests per cycle, daemon memory, and how fast a new version lands.

- Engine level (build_core + engine.publish + rotator.cycle(), no daemon): 100 volumes, each
  mounting the same 10 unpinned secrets, one Azure identity (the seed pod's, through NMI; each
  volume its own pod uid). Requests counted by the devstack per cycle, against a naive loop doing
  one get per volume per object through the same fetcher and pool (the per-volume baseline).
  The same with every version pinned: a cycle should send nothing.
- Daemon level: VmRSS of a real daemon subprocess with 500 mounted volumes (1 secret each, one
  pod uid each), and the time from a new secret version to the changed file with
  --rotation-poll-interval 1s.
"""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    VAULT,
    Budget,
    Context,
    Row,
    ensure_secrets,
    keyvault_requests,
    median,
    ms_since,
    pod_uid,
)
from devstack.harness.attributes import csi_attributes
from devstack.harness.node import csi_target

NAME = "rotation"
TITLE = "rotation: requests per cycle, daemon RSS, version-to-file latency"
OBJECTS = 10
POLL_INTERVAL = 1.0


def publish_volumes(
    ctx: Context, core: Any, names: list[str], count: int, versions: list[str] | None = None
) -> list[tuple[str, Path]]:
    from driver.contract import PublishRequest

    root = ctx.scratch("rot")
    published = []

    def one(_: int) -> tuple[str, Path]:
        uid = pod_uid()
        volume_id = f"bench-rot-{uuid.uuid4().hex[:12]}"
        target = csi_target(root, uid)
        attributes = csi_attributes(ctx.devstack.nmi_port, names, uid=uid, versions=versions)
        core.engine.publish(PublishRequest(volume_id, target, attributes))
        return volume_id, target

    with ThreadPoolExecutor(4) as pool:
        published = list(pool.map(one, range(count)))
    return published


def naive_check(core: Any) -> None:
    """The per-volume baseline: every object of every volume asked for, one get each."""
    jobs = []
    for record in core.ledger.all():
        access, _ = core.resolver.access_recorded(record, core.ledger.auth_of(record))
        jobs.extend((access, obj) for obj in record.spec.objects)
    with ThreadPoolExecutor(8) as pool:  # the rotator's pool size
        list(pool.map(lambda job: core.resolver.latest(*job), jobs))


def counted(ctx: Context, fn: Any) -> tuple[int, float, Any]:
    """(Key Vault requests, wall ms, result) of fn()."""
    ctx.devstack.reset_counters()
    t0 = time.perf_counter()
    result = fn()
    elapsed = ms_since(t0)
    return keyvault_requests(ctx.devstack), elapsed, result


def engine_level(ctx: Context) -> list[Row]:
    from driver.app import build_core

    stack = ctx.devstack
    volumes = ctx.runs(100, 10)
    names, _ = ensure_secrets(stack, "bench-rot", OBJECTS)
    root = ctx.scratch("rotcore")
    core = build_core(ctx.settings(root / "state"))
    rows: list[Row] = []
    scale = f"{volumes} volumes x {OBJECTS} shared objects, one identity"
    try:
        core.upkeep.restore()
        published = publish_volumes(ctx, core, names, volumes)
        naive, naive_ms, _ = counted(ctx, lambda: naive_check(core))
        requests, cycle_ms, report = counted(ctx, core.rotator.cycle)
        rows.append(
            Row(
                figure=f"Key Vault requests per rotation cycle, {scale}",
                value=requests,
                unit="req",
                baseline=naive,
                baseline_label="naive: one get per volume per object",
                target=("<=", 10.0),
                note=f"cycle reported {report.checks} checks, {report.saved} saved, "
                f"{len(report.failures)} failures",
            )
        )
        rows.append(
            Row(
                figure=f"rotation cycle time, nothing changed, {volumes} volumes",
                value=cycle_ms,
                unit="ms",
                baseline=naive_ms,
                baseline_label="naive loop, 8 threads",
                note="no injected latency",
            )
        )
        # One object changes: still one request per object, and every volume swaps.
        stack.set_secret(VAULT, names[0], f"rotated-{uuid.uuid4().hex}")
        requests, cycle_ms, report = counted(ctx, core.rotator.cycle)
        rows.append(
            Row(
                figure=f"rotation cycle time, 1 object changed in {volumes} volumes",
                value=cycle_ms,
                unit="ms",
                note=f"{requests} requests, {len(report.rotated)} volumes swapped, "
                f"{len(report.failures)} failures",
            )
        )
        for volume_id, target in published:
            core.engine.unpublish(volume_id, target)

        pinned_versions = [stack.set_secret(VAULT, n, "pinned-" + uuid.uuid4().hex) for n in names]
        published = publish_volumes(ctx, core, names, volumes, versions=pinned_versions)
        requests, _, report = counted(ctx, core.rotator.cycle)
        rows.append(
            Row(
                figure=f"Key Vault requests per rotation cycle, pinned versions ({volumes}x{OBJECTS})",
                value=requests,
                unit="req",
                baseline=naive,
                baseline_label="naive, unpinned run",
                target=("<=", 0.0),
                note=f"cycle reported {report.checks} checks",
            )
        )
        for volume_id, target in published:
            core.engine.unpublish(volume_id, target)
    finally:
        core.close()
    return rows


def daemon_rss(ctx: Context) -> list[Row]:
    stack = ctx.devstack
    count = ctx.runs(500, 20)
    root = ctx.scratch("rss")
    with ctx.daemon("rssd") as daemon:
        time.sleep(0.5)  # let start-up settle
        idle = daemon.rss_mib()
        published: list[tuple[str, Path]] = []

        def one(i: int) -> tuple[str, Path]:
            uid = pod_uid()
            target = csi_target(root, uid)
            attributes = csi_attributes(stack.nmi_port, ["secret1"], uid=uid)
            daemon.publish(f"bench-rss-{i}", target, attributes)
            return f"bench-rss-{i}", target

        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            published = list(pool.map(one, range(count)))
        publish_s = ms_since(t0) / 1000.0
        loaded = daemon.rss_mib()
        for volume_id, target in published:
            daemon.unpublish(volume_id, target)
        emptied = daemon.rss_mib()
    return [
        Row(
            figure=f"daemon RSS with {count} mounted volumes",
            value=loaded,
            unit="MiB",
            baseline=idle,
            baseline_label="same daemon, no volumes",
            target=("<=", 150.0),
            note=f"1 secret and 1 pod uid per volume; published in {publish_s:.1f} s "
            f"(4 concurrent); {emptied:.0f} MiB after unpublishing all",
        )
    ]


def rotation_latency(ctx: Context, budget: Budget) -> list[Row]:
    stack = ctx.devstack
    name = "bench-rot-live"
    stack.set_secret(VAULT, name, "initial")
    root = ctx.scratch("live")
    uid = pod_uid()
    target = csi_target(root, uid)
    samples: list[float] = []
    interval = f"{POLL_INTERVAL:g}s"
    with ctx.daemon("lived", "--rotation-poll-interval", interval) as daemon:
        daemon.publish("bench-live", target, csi_attributes(stack.nmi_port, [name], uid=uid))
        path = target / name
        jitter = random.Random(7)
        for i in range(ctx.runs(7, 2)):
            # A random phase against the poll loop (the previous change landed right after a poll).
            time.sleep(jitter.uniform(0.0, POLL_INTERVAL))
            value = f"v{i}-{uuid.uuid4().hex}"
            stack.set_secret(VAULT, name, value)
            t0 = time.perf_counter()
            deadline = time.monotonic() + POLL_INTERVAL * 5 + 5
            while path.read_text() != value:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} did not change within {POLL_INTERVAL * 5 + 5} s")
                time.sleep(0.005)
            samples.append(ms_since(t0))
            if budget.over():
                break
        daemon.unpublish("bench-live", target)
    return [
        Row(
            figure=f"new version to changed file, poll interval {interval}",
            value=median(samples),
            unit="ms",
            baseline=POLL_INTERVAL * 1000.0,
            baseline_label="poll interval",
            target=("<=", POLL_INTERVAL * 1000.0 + 1000.0),
            note=f"median of {len(samples)}; max {max(samples):.0f} ms",
            samples=samples,
        )
    ]


def run(ctx: Context) -> list[Row]:
    budget = Budget(150)
    rows = engine_level(ctx)
    rows += daemon_rss(ctx)
    rows += rotation_latency(ctx, budget)
    return rows
