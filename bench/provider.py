"""The secrets-store provider front door: Key Vault requests for many pods' Mounts, and the
latency of one Mount over the provider socket.

- 100 pods of one Deployment (one namespace and service account: workload identity), each volume
  naming the same 10 secrets, Mounted 8 at a time as the secrets-store driver does at a rollout or
  a rotation republish. Requests counted by the devstack, against the same Mounts one at a time on
  a daemon that reuses nothing (`--provider-fresh-for 0`): one get per pod per object, what
  provider-azure sends, measured in the same run. Also that daemon with 8 in flight (only
  overlapping fetches shared).
- The median wall time of one Mount of those 10 secrets (nothing shared), against a CSI
  NodePublishVolume of the same objects on the same daemon.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import VAULT, Context, Row, ensure_secrets, keyvault_requests, median, ms_since
from devstack.harness import world
from devstack.harness.node import csi_target
from devstack.harness.provider import ProviderClient, mount_request, spc_attributes

NAME = "provider"
TITLE = "secrets-store provider front door: Key Vault requests per rollout, Mount latency"
OBJECTS = 10


def _parameters(ctx: Context, names: list[str]) -> dict[str, str]:
    lines = ["array:"]
    for name in names:
        lines += ["  - |", f"    objectName: {name}", "    objectType: secret"]
    return {
        "clientID": ctx.devstack.client_id(world.WORKLOAD_IDENTITY),
        "keyvaultName": VAULT,
        "tenantId": world.TENANT,
        "objects": "\n".join(lines) + "\n",
    }


def _tokens(ctx: Context) -> str:
    token = ctx.devstack.sa_token(world.NAMESPACE, world.WORKLOAD_SA)
    return json.dumps(
        {
            "api://AzureADTokenExchange": {
                "token": token,
                "expirationTimestamp": "2099-01-01T00:00:00Z",
            }
        }
    )


def _rollout(
    ctx: Context, client: ProviderClient, params: dict[str, str], pods: int, parallel: int = 8
) -> int:
    """Key Vault requests for `pods` Mounts, `parallel` at a time."""
    tokens = _tokens(ctx)

    def one(i: int) -> None:
        attrs = spc_attributes(
            params,
            pod=f"web-{i}",
            uid=str(uuid.uuid4()),
            service_account=world.WORKLOAD_SA,
            tokens=tokens,
        )
        answer = client.mount(mount_request(attrs))
        if len(answer.files) != OBJECTS:
            raise RuntimeError(f"Mount answered {len(answer.files)} files, not {OBJECTS}")

    ctx.devstack.reset_counters()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(pods)))
    return keyvault_requests(ctx.devstack)


def run(ctx: Context) -> list[Row]:
    pods = ctx.runs(100, 8)
    names, _ = ensure_secrets(ctx.devstack, "bench-provider", OBJECTS)
    params = _parameters(ctx, names)
    counts: dict[str, int] = {}
    mount_ms: list[float] = []
    publish_ms: list[float] = []
    for fresh_for in ("30s", "0"):
        root = ctx.scratch("prov")
        socket = root / "azure.sock"
        daemon: Any = ctx.daemon(
            "provd", "--provider-socket", str(socket), "--provider-fresh-for", fresh_for
        )
        with daemon, ProviderClient(socket) as client:
            client.wait_ready()
            counts[fresh_for] = _rollout(ctx, client, params, pods)
            if fresh_for != "0":
                continue
            # One Mount at a time, nothing reused: every pod fetches every object, as
            # provider-azure does.
            counts["each"] = _rollout(ctx, client, params, pods, parallel=1)
            # Latency, nothing shared: one Mount vs one CSI publish of the same objects.
            tokens = _tokens(ctx)
            attrs = spc_attributes(params, service_account=world.WORKLOAD_SA, tokens=tokens)
            for i in range(ctx.runs(20, 2)):
                t0 = time.perf_counter()
                client.mount(mount_request(attrs))
                mount_ms.append(ms_since(t0))
                target = csi_target(root, str(uuid.uuid4()))
                volume_id = f"bench-prov-{i}"
                csi_attrs = {**attrs, "csi.storage.k8s.io/ephemeral": "true"}
                del csi_attrs["secretProviderClass"]
                t0 = time.perf_counter()
                daemon.publish(volume_id, target, csi_attrs)
                publish_ms.append(ms_since(t0))
                daemon.unpublish(volume_id, target)
    scale = f"{pods} pods x {OBJECTS} secrets, one service account (workload identity)"
    return [
        Row(
            figure=f"provider Mounts, Key Vault requests, {scale}",
            value=counts["30s"],
            unit="req",
            baseline=counts["each"],
            baseline_label="nothing shared: one get per pod per object, as provider-azure",
            target=("<=", 2.0 * OBJECTS + 2),
            note="8 Mounts in flight at a time; --provider-fresh-for 30s; 401 challenges included",
        ),
        Row(
            figure=f"provider Mounts, Key Vault requests, {scale}, in-flight sharing only",
            value=counts["0"],
            unit="req",
            baseline=counts["each"],
            baseline_label="nothing shared",
            note="--provider-fresh-for 0: only Mounts whose fetch overlaps share it",
        ),
        Row(
            figure=f"provider Mount, {OBJECTS} secrets, nothing shared",
            value=median(mount_ms),
            unit="ms",
            baseline=median(publish_ms),
            baseline_label="CSI NodePublishVolume of the same objects, same daemon",
            samples=mount_ms,
        ),
    ]
