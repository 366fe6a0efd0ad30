"""What the CSI front door costs: NodePublishVolume over gRPC versus calling the engine.

The same volume (same objects, same pod identity), no injected latency, both sides warm (a primer
publish each): the engine built in this process, and a real daemon subprocess called over its unix
socket with the generated stubs, as kubelet does. Runs alternate between the two so drift affects
both; every publish uses a fresh volume id and target and is unpublished afterwards (not timed).
"""

from __future__ import annotations

import uuid
from functools import partial

from bench.common import Budget, Context, Row, ensure_secrets, median, pod_uid, timed_ms
from devstack.harness.attributes import csi_attributes
from devstack.harness.node import csi_target

NAME = "grpc_overhead"
TITLE = "CSI gRPC publish versus a direct engine call"
OBJECTS = 5


def run(ctx: Context) -> list[Row]:
    from driver.app import build_core
    from driver.contract import PublishRequest

    stack = ctx.devstack
    names, _ = ensure_secrets(stack, "bench-csi", OBJECTS)
    runs = ctx.runs(15, 2)
    budget = Budget(60)
    root = ctx.scratch("grpc")
    uid = pod_uid()
    attributes = csi_attributes(stack.nmi_port, names, uid=uid)
    core = build_core(ctx.settings(root / "state"))
    direct: list[float] = []
    via_grpc: list[float] = []
    try:
        core.upkeep.restore()
        with ctx.daemon("grpcd") as daemon:
            for i in range(runs + 1):  # the first round is the primer
                volume_id = f"bench-{uuid.uuid4().hex[:12]}"
                target = csi_target(root, uid, volume_id)
                request = PublishRequest(volume_id, target, attributes)
                elapsed = timed_ms(partial(core.engine.publish, request))
                core.engine.unpublish(volume_id, target)
                if i:
                    direct.append(elapsed)

                volume_id = f"bench-{uuid.uuid4().hex[:12]}"
                target = csi_target(root, uid, volume_id)
                elapsed = timed_ms(partial(daemon.publish, volume_id, target, attributes))
                daemon.unpublish(volume_id, target)
                if i:
                    via_grpc.append(elapsed)
                if i and budget.over():
                    break
    finally:
        core.close()
    overhead = median(via_grpc) - median(direct)
    note = f"median of {len(direct)} each, {OBJECTS} secrets, no injected latency"
    return [
        Row(
            figure=f"CSI NodePublishVolume via gRPC, {OBJECTS} secrets",
            value=median(via_grpc),
            unit="ms",
            baseline=median(direct),
            baseline_label="engine.publish in-process",
            note=note,
            samples=via_grpc,
        ),
        Row(
            figure="CSI gRPC publish overhead over the engine",
            value=overhead,
            unit="ms",
            baseline=median(direct),
            baseline_label="engine.publish in-process",
            target=("<=", 20.0),
            note=note + "; median(gRPC) - median(direct)",
        ),
    ]
