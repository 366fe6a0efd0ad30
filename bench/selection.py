"""Selection by pattern: Key Vault requests per rotation cycle when volumes select `app-*`.

A devstack of its own (three vaults are needed; the shared one has two), seeded with 200 secrets
spread over the vaults `selkv1..3`, half of them named `app-NNN`. 100 volumes (one pod uid each,
one identity: the seed pod's, through NMI) each hold three selecting entries, `app-*` in each
vault. Engine level (build_core + engine.publish + rotator.cycle(), no daemon).

- ours: one rotation cycle: each (vault, selector, identity) listed once, each matched object's
  latest version asked for once, whatever the number of volumes;
- baseline, same run, same fetcher and pool: a naive per-volume expansion, every volume listing
  each of its vaults and asking for each of its matches itself.

Requests are what the devstack counted on the three vaults (list pages of at most 25 names,
gets, 401 challenges). The target is one listing per vault (all its pages) plus one get per
match.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bench.common import Context, Row, ms_since, pod_uid
from devstack.client import Devstack
from devstack.harness.attributes import csi_attributes
from devstack.harness.engine import core_settings
from devstack.harness.node import csi_target
from devstack.harness.world import REPO

NAME = "selection"
TITLE = "selection: requests per rotation cycle, app-* in 3 vaults, vs naive expansion"
VAULTS = ("selkv1", "selkv2", "selkv3")
PATTERN = "app-*"
PAGE = 25


def seed(path: Path, secrets: int) -> Path:
    """The default world plus three vaults holding `secrets` secrets, half matching app-*."""
    world: dict[str, Any] = yaml.safe_load((REPO / "devstack" / "default_seed.yaml").read_text())
    for i, vault in enumerate(VAULTS):
        mine = range(i, secrets, len(VAULTS))
        world["vaults"][vault] = {
            "access_policies": {"pod-identity": {"secrets": ["get", "list"]}},
            "secrets": {
                (f"app-{n:03d}" if n % 2 == 0 else f"other-{n:03d}"): {"value": f"v-{n}"}
                for n in mine
            },
        }
    path.write_text(yaml.safe_dump(world))
    return path


def objects(per_vault_bound: int) -> str:
    entries = [
        {
            "objectNamePattern": PATTERN,
            "objectType": "secret",
            "keyvaultName": vault,
            "objectAlias": vault,
            "maxMatches": str(per_vault_bound),
        }
        for vault in VAULTS
    ]
    return yaml.safe_dump({"array": entries})


def requests(stack: Devstack) -> int:
    return sum(stack.count(vault=v) for v in VAULTS)


def naive_cycle(core: Any) -> None:
    """Per volume: list each selecting entry's vault, then get each match, as if alone."""

    def one_volume(record: Any) -> None:
        access, _ = core.resolver.access_recorded(record, core.ledger.auth_of(record))
        for entry in record.spec.objects:
            for name in core.resolver.listing(access, entry):
                core.resolver.latest(access, entry.selected(name))

    with ThreadPoolExecutor(8) as pool:  # the rotator's pool size
        list(pool.map(one_volume, core.ledger.all()))


def run(ctx: Context) -> list[Row]:
    from driver.app import build_core
    from driver.contract import PublishRequest

    volumes = ctx.runs(100, 4)
    secrets = ctx.runs(200, 30)
    root = ctx.scratch("sel")
    stack = Devstack.start(root / "devstack", seed=seed(root / "seed.yaml", secrets))
    core = build_core(core_settings(root / "state", stack, ctx.mount_mode, deadline=5.0))
    matches = secrets // 2 + secrets % 2
    # A listing is paged: Key Vault (and the devstack) return at most 25 items a page.
    pages = sum(-(-len(range(i, secrets, len(VAULTS))) // PAGE) for i in range(len(VAULTS)))
    try:
        core.upkeep.restore()
        extra: dict[str, str | None] = {
            "keyvaultobjectnames": None,
            "keyvaultobjecttypes": None,
            "objects": objects(100),
        }

        def publish(_: int) -> None:
            uid = pod_uid()
            target = csi_target(root / "pods", uid)
            attrs = csi_attributes(stack.nmi_port, uid=uid, extra=extra)
            volume_id = f"bench-sel-{uuid.uuid4().hex[:12]}"
            core.engine.publish(PublishRequest(volume_id, target, attrs))

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(publish, range(volumes)))

        stack.reset_counters()
        t0 = time.perf_counter()
        naive_cycle(core)
        naive_ms = ms_since(t0)
        naive = requests(stack)

        stack.reset_counters()
        t0 = time.perf_counter()
        report = core.rotator.cycle()
        cycle_ms = ms_since(t0)
        ours = requests(stack)
        scale = (
            f"{volumes} volumes each selecting {PATTERN} in {len(VAULTS)} vaults "
            f"({secrets} secrets, {matches} match)"
        )
        rows = [
            Row(
                figure=f"Key Vault requests per rotation cycle, {scale}",
                value=ours,
                unit="req",
                baseline=naive,
                baseline_label="naive: each volume lists and gets its own matches",
                target=("<=", float(pages + matches)),
                note=f"cycle: {report.lists} listings ({pages} pages; {report.lists_saved} saved), "
                f"{report.checks} gets ({report.saved} saved), {len(report.failures)} failures",
            ),
            Row(
                figure=f"rotation cycle time, nothing changed, {scale}",
                value=cycle_ms,
                unit="ms",
                baseline=naive_ms,
                baseline_label="naive expansion, 8 threads",
                note="no injected latency",
            ),
        ]
        # New matches appear and removed ones disappear in one cycle, at the same cost.
        stack.set_secret(VAULTS[1], "app-new", "new")
        stack.delete_secret(VAULTS[0], "app-000")  # seeded in the first vault (n = 0)
        stack.reset_counters()
        report = core.rotator.cycle()
        rows.append(
            Row(
                figure=f"Key Vault requests per rotation cycle, 1 match added and 1 removed, {scale}",
                value=requests(stack),
                unit="req",
                baseline=naive,
                baseline_label="naive, unchanged run",
                note=f"{len(report.rotated)} volumes swapped, {len(report.failures)} failures",
            )
        )
        return rows
    finally:
        for record in core.ledger.all():
            core.engine.unpublish(record.volume_id, Path(record.target_path))
        core.close()
        stack.stop()
