"""Benchmark runner: `python -m bench [--quick] [--only NAME ...]`.

Starts one devstack, runs each benchmark module against it (each bounded in time and count),
prints one table (figure, value, baseline, ratio, target, pass/fail) as Markdown, and writes
bench/results.json and bench/results.md. Exit status: 0 when every benchmark ran (targets missed
are reported, not fatal; `--strict` makes them fatal), 1 when a benchmark crashed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from bench.common import Context, Row, fmt
from devstack.harness.node import default_mount_mode, release_mounts

BENCHMARKS = (
    "engine_publish",
    "grpc_overhead",
    "flexvolume",
    "rotation",
    "selection",
    "provider",
    "nmi",
    "mic",
)
HERE = Path(__file__).resolve().parent


def load(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def markdown(rows: Sequence[Row]) -> str:
    head = "| figure | value | baseline | ratio | target | pass |"
    lines = [head, "|---|---:|---|---:|---|:---:|"]
    for row in rows:
        baseline = "-"
        if row.baseline is not None:
            baseline = f"{fmt(row.baseline)} {row.unit}"
            if row.baseline_label:
                baseline += f" ({row.baseline_label})"
        ratio = "-" if row.ratio is None else f"{row.ratio:.3g}"
        verdict = {True: "pass", False: "FAIL", None: "-"}[row.passed]
        lines.append(
            f"| {row.figure} | {fmt(row.value)} {row.unit} | {baseline} | {ratio} "
            f"| {row.target_text()} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="repeatable")
    parser.add_argument("--quick", action="store_true", help="tiny counts, for smoke tests")
    parser.add_argument("--mount-mode", choices=("tmpfs", "dir"), default=None)
    parser.add_argument("--out", type=Path, default=HERE, help="where results.json/md go")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    mount_mode = args.mount_mode or default_mount_mode()
    from devstack.client import Devstack

    work = Path(tempfile.mkdtemp(prefix="kvb-", dir="/tmp"))
    names = args.only or list(BENCHMARKS)
    rows: list[Row] = []
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    started = time.perf_counter()
    stack = Devstack.start(work / "devstack")
    try:
        ctx = Context(devstack=stack, work=work, mount_mode=mount_mode, quick=args.quick)
        for name in names:
            module = load(name)
            print(f"# {name}: {module.TITLE} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                produced: list[Row] = module.run(ctx)
            except Exception as exc:  # one broken benchmark must not hide the others
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
                produced = []
            finally:
                stack.clear_faults()
            durations[name] = time.perf_counter() - t0
            for row in produced:
                row.benchmark = name
            rows.extend(produced)
            print(f"#   {len(produced)} rows in {durations[name]:.1f} s", file=sys.stderr)
    finally:
        stack.stop()
        release_mounts(work)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    table = markdown(rows)
    header = (
        f"kv driver benchmarks ({'quick, ' if args.quick else ''}mount mode {mount_mode}, "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{_cpus()} CPUs; total {time.perf_counter() - started:.0f} s)\n\n"
    )
    print()
    print(header + table, end="")
    for name, error in errors.items():
        print(f"\nbenchmark {name} FAILED: {error}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(header + table)
    result = {
        "quick": args.quick,
        "mount_mode": mount_mode,
        "python": platform.python_version(),
        "cpus": _cpus(),
        "seconds": {k: round(v, 2) for k, v in durations.items()},
        "errors": errors,
        "rows": [row.to_json() for row in rows],
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if errors:
        return 1
    if args.strict and any(row.passed is False for row in rows):
        return 2
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
