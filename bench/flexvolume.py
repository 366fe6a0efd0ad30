"""The FlexVolume shim: `kv init` start-up time and the cost of a mount through the shim.

- init: `python3 -I -S flexvolume/azure~kv/kv init` as a subprocess (the node's system python3,
  as kubelet would run it), against a bare `python3 -I -S -c pass` as the baseline.
- mount: `kv mount <dir> <json>` through the shim and the daemon's bridge, against a CSI
  NodePublishVolume of the same volume (same objects and pod) through the same daemon. Runs
  alternate; each mount/publish is undone afterwards (not timed).
"""

from __future__ import annotations

import subprocess
import time
from functools import partial

from bench.common import (
    Budget,
    Context,
    Row,
    ensure_secrets,
    median,
    ms_since,
    pod_uid,
    shim,
    timed_ms,
)
from devstack.harness import world
from devstack.harness.attributes import csi_attributes, flex_options, go_json
from devstack.harness.node import csi_target, flex_target
from devstack.harness.shim import system_python

NAME = "flexvolume"
TITLE = "FlexVolume shim: init and mount"
OBJECTS = 5


def bare_interpreter_ms(python: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-I", "-S", "-c", "pass"], check=True, timeout=30)
    return ms_since(t0)


def run(ctx: Context) -> list[Row]:
    stack = ctx.devstack
    python = system_python()
    root = ctx.scratch("flex")
    log = root / "flex.log"
    budget = Budget(60)

    init: list[float] = []
    bare: list[float] = []
    for _ in range(ctx.runs(21, 3)):
        init.append(shim(python, root / "none.sock", log, "init"))
        bare.append(bare_interpreter_ms(python))

    names, _ = ensure_secrets(stack, "bench-flex", OBJECTS)
    csi: list[float] = []
    flex: list[float] = []
    runs = ctx.runs(11, 2)
    # One pod with many volumes: the credential and SDK clients stay warm on both paths.
    uid = pod_uid()
    attributes = csi_attributes(stack.nmi_port, names, uid=uid)
    options = go_json(flex_options(stack.nmi_port, names, uid=uid, pod=world.CSI_POD))
    with ctx.daemon("flexd") as daemon:
        for i in range(runs + 1):  # the first round is the primer
            volume_id = f"bench-csi-{i}"
            target = csi_target(root, uid, volume_id)
            elapsed = timed_ms(partial(daemon.publish, volume_id, target, attributes))
            daemon.unpublish(volume_id, target)
            if i:
                csi.append(elapsed)

            mount_dir = flex_target(root, uid, f"flex-{i}")
            elapsed = shim(python, daemon.flex_socket, log, "mount", str(mount_dir), options)
            shim(python, daemon.flex_socket, log, "unmount", str(mount_dir))
            if i:
                flex.append(elapsed)
            if i and budget.over():
                break

    note = f"{python}; median of {len(init)}"
    mount_note = f"median of {len(flex)} each, {OBJECTS} secrets, no injected latency"
    return [
        Row(
            figure="FlexVolume `kv init` exec time",
            value=median(init),
            unit="ms",
            baseline=median(bare),
            baseline_label="bare `python3 -I -S -c pass`",
            target=("<=", 100.0),
            note=note,
            samples=init,
        ),
        Row(
            figure=f"FlexVolume `kv mount`, {OBJECTS} secrets",
            value=median(flex),
            unit="ms",
            baseline=median(csi),
            baseline_label="CSI publish, same daemon",
            note=mount_note,
            samples=flex,
        ),
        Row(
            figure="FlexVolume mount overhead over CSI publish",
            value=median(flex) - median(csi),
            unit="ms",
            baseline=median(csi),
            baseline_label="CSI publish, same daemon",
            target=("<=", 150.0),
            note=mount_note + "; median(flex) - median(CSI)",
        ),
    ]
