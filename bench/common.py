"""Shared parts of the benchmarks: the run context, result rows, timing, secrets, and the
harness's daemon and shim (devstack.harness) set up for measuring.

Every benchmark module exposes `NAME`, `TITLE` and `run(ctx: Context) -> list[Row]`; the runner
(bench/__main__.py) starts one devstack, hands each module the same `Context` and collects rows.
A row compares a measured value with a baseline measured in the same run and with a target.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.client import Devstack
from devstack.harness.daemon import DaemonProcess
from devstack.harness.engine import core_settings
from devstack.harness.shim import run_shim, shim_command
from devstack.harness.world import VAULT

DEADLINE = 5.0  # seconds for NMI and each request: generous, timings are measured not bounded


# -- result rows ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. `target` is (operator, number), checked against `value`."""

    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: tuple[str, float] | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)
    benchmark: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        op, limit = self.target
        return self.value <= limit if op == "<=" else self.value >= limit

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        op, limit = self.target
        return f"{'≤' if op == '<=' else '≥'} {fmt(limit)} {self.unit}"

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figure": self.figure,
            "value": round(self.value, 3),
            "unit": self.unit,
            "baseline": None if self.baseline is None else round(self.baseline, 3),
            "baseline_label": self.baseline_label,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "target": None
            if self.target is None
            else {"op": self.target[0], "value": self.target[1], "unit": self.unit},
            "pass": self.passed,
            "note": self.note,
            "samples": [round(s, 3) for s in self.samples],
        }


def fmt(number: float) -> str:
    if number == int(number):
        return f"{int(number)}"
    if abs(number) >= 100:
        return f"{number:.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}"
    return f"{number:.2f}"


# -- context --------------------------------------------------------------------------------------


@dataclass
class Context:
    devstack: Devstack
    work: Path  # short path under /tmp: unix socket paths are limited to 107 bytes
    mount_mode: str
    quick: bool

    def runs(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full

    def scratch(self, name: str) -> Path:
        path = self.work / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    def settings(self, state_dir: Path, **overrides: Any) -> Any:
        """Settings for an in-process engine, as the daemon would build them."""
        return core_settings(
            state_dir, self.devstack, self.mount_mode, deadline=DEADLINE, **overrides
        )

    def daemon(self, name: str, *extra: str) -> DaemonProcess:
        """A (not yet started) daemon with its own scratch root; `with` starts and stops it."""
        return DaemonProcess(
            self.scratch(name),
            self.devstack,
            self.mount_mode,
            ["--log-level", "warning", *extra],
            node_id="bench-node",
            nmi_deadline=f"{DEADLINE:g}s",
            request_timeout=f"{DEADLINE:g}s",
            metrics=False,  # as before: no HTTP server in the measured process
        )


# -- timing ---------------------------------------------------------------------------------------


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def timed_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return ms_since(t0)


class Budget:
    """A wall-clock allowance for one benchmark: loops stop early rather than overrun."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        return self.left() <= 0


# -- volumes --------------------------------------------------------------------------------------


def pod_uid() -> str:
    return str(uuid.uuid4())


def ensure_secrets(stack: Devstack, prefix: str, count: int) -> tuple[list[str], list[str]]:
    """`count` secrets named `<prefix>-NN` in the vault; returns (names, current versions)."""
    names = [f"{prefix}-{i:02d}" for i in range(count)]
    versions = [stack.set_secret(VAULT, name, f"{name}-value-{uuid.uuid4().hex}") for name in names]
    return names, versions


def keyvault_requests(stack: Devstack) -> int:
    """Requests the vault received (every operation and status, 401 challenges included)."""
    return stack.count(vault=VAULT)


# -- the FlexVolume shim --------------------------------------------------------------------------


def shim(python: str, socket: Path, log: Path, *args: str) -> float:
    """Exec the shim as kubelet does (PATH of a node, `python -I -S`); its wall time in ms.
    Fails loudly on a non-Success reply."""
    result = run_shim(
        args, socket=socket, log=log, executable=shim_command(python), path="/usr/bin:/bin"
    )
    if result.status != "Success":
        raise RuntimeError(f"shim {args[0]} failed ({result.returncode}): {result.message[:300]}")
    return result.elapsed_ms
