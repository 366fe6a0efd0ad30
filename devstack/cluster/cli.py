"""`kv-devstack cluster up|down|status`: the local cluster from the command line.

`up` returns once the node is Ready and leaves the cluster running (every process detached,
recorded in DIR/cluster.json); `down` takes it apart from any later process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="a real single-node Kubernetes (kubelet, containerd)")
    actions = cluster.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start etcd ... kubelet under DIR; return when Ready")
    up.add_argument("--state-dir", required=True, type=Path)
    up.add_argument("--timeout", type=float, default=180.0, help="bound on each wait (seconds)")
    down = actions.add_parser("down", help="stop everything and undo every host change")
    down.add_argument("--state-dir", required=True, type=Path)
    status = actions.add_parser("status", help="print the recorded components and their state")
    status.add_argument("--state-dir", required=True, type=Path)


def run(args: argparse.Namespace) -> int:
    from devstack.cluster import BinaryNotFound, Cluster, ComponentError, missing

    if args.action == "up":
        reasons = missing()
        if reasons:
            print(
                "kv-devstack cluster: cannot run here:\n  " + "\n  ".join(reasons), file=sys.stderr
            )
            return 2
        try:
            cluster = Cluster(args.state_dir, timeout=args.timeout).up()
        except (BinaryNotFound, ComponentError) as exc:
            print(f"kv-devstack cluster: {exc}", file=sys.stderr)
            return 1
        print(f"cluster up in {cluster.bring_up_seconds:.1f} s; node {cluster.node_name}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"kubelet root {cluster.kubelet_root}, FlexVolume dir {cluster.volume_plugin_dir}")
        return 0
    state = args.state_dir / "cluster.json"
    if not state.exists():
        print(f"kv-devstack cluster: no cluster recorded in {args.state_dir}", file=sys.stderr)
        return 0 if args.action == "down" else 1
    cluster = Cluster.load(args.state_dir)
    if args.action == "status":
        for name, component in cluster.components.items():
            print(
                f"{name:24} pid {component.pid:<8} {'running' if component.running() else 'stopped'}"
            )
        return 0
    problems = cluster.down()
    for problem in problems:
        print(f"kv-devstack cluster: {problem}", file=sys.stderr)
    return 1 if problems else 0
