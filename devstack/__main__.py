"""`kv-devstack` command line: run the devstack (`up`) and drive a running one."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.client import SA_AUDIENCE, Devstack, DevstackError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kv-devstack",
        description="Local Key Vault, Entra ID, IMDS and NMI stand-ins for the kv driver.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the devstack in the foreground until SIGTERM/SIGINT")
    up.add_argument("--state-dir", required=True, type=Path)
    up.add_argument("--seed", type=Path, help="seed YAML (default: the built-in default world)")
    up.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)"
    )
    up.add_argument("--authority-port", type=int)
    up.add_argument("--imds-port", type=int)
    up.add_argument("--nmi-port", type=int)
    up.add_argument("--admin-port", type=int)
    up.add_argument("--arm-port", type=int)
    up.add_argument("-v", "--verbose", action="store_true", help="log every request")

    secret = sub.add_parser("secret", help="change secrets in a running devstack")
    secret_sub = secret.add_subparsers(dest="action", required=True)
    s_set = secret_sub.add_parser("set", help="add a new version; prints its version id")
    s_set.add_argument("--state-dir", required=True, type=Path)
    s_set.add_argument("--content-type")
    s_set.add_argument("vault")
    s_set.add_argument("name")
    s_set.add_argument("value")
    for action in ("disable", "enable"):
        p = secret_sub.add_parser(action, help=f"{action} one version")
        p.add_argument("--state-dir", required=True, type=Path)
        p.add_argument("vault")
        p.add_argument("name")
        p.add_argument("version")
    s_del = secret_sub.add_parser("delete", help="delete a secret")
    s_del.add_argument("--state-dir", required=True, type=Path)
    s_del.add_argument("vault")
    s_del.add_argument("name")

    sa = sub.add_parser("sa-token", help="print a service-account token (workload identity)")
    sa.add_argument("--state-dir", required=True, type=Path)
    sa.add_argument("--namespace", required=True)
    sa.add_argument("--service-account", required=True)
    sa.add_argument("--audience", default=SA_AUDIENCE)
    sa.add_argument("--expires-in", type=int, default=3600)

    fault = sub.add_parser("fault", help="set a fault rule (no options: clear all rules)")
    fault.add_argument("--state-dir", required=True, type=Path)
    fault.add_argument("--vault", default="*")
    fault.add_argument(
        "--endpoint", default="*", choices=["*", "keyvault", "token", "imds", "nmi", "arm"]
    )
    fault.add_argument("--subscription", help="ARM rules: the subscription (instead of --vault)")
    fault.add_argument("--count", type=int, default=0, help="only the next N matching requests")
    fault.add_argument("--latency-ms", type=float, default=0.0)
    fault.add_argument("--rate-429", type=float, default=0.0)
    fault.add_argument("--rate-503", type=float, default=0.0)
    fault.add_argument("--drop", type=float, default=0.0)
    fault.add_argument("--retry-after", type=int, default=1)
    fault.add_argument("--clear", action="store_true", help="remove every fault rule")

    counters = sub.add_parser("counters", help="print request counters as JSON")
    counters.add_argument("--state-dir", required=True, type=Path)
    counters.add_argument("--reset", action="store_true", help="reset after printing")

    arm = sub.add_parser("arm", help="VMs and scale sets of the devstack's resource manager")
    arm_sub = arm.add_subparsers(dest="action", required=True)
    arm_list = arm_sub.add_parser("list", help="every VM and scale set with its identities")
    arm_list.add_argument("--state-dir", required=True, type=Path)
    arm_list.add_argument("--json", action="store_true", help="print JSON instead of a table")

    revoke = sub.add_parser("revoke", help="remove an identity's access policies everywhere")
    revoke.add_argument("--state-dir", required=True, type=Path)
    revoke.add_argument("identity")

    from devstack.cluster.cli import add_parser as add_cluster_parser

    add_cluster_parser(sub)
    return parser


def _up(args: argparse.Namespace) -> int:
    from devstack.seed import SeedError
    from devstack.server import PortOverrides, RunningStack, run_forever

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s devstack %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"kv-devstack: --host must be a loopback address, not {args.host!r}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack = RunningStack(
            args.state_dir,
            args.seed,
            args.host,
            PortOverrides(
                args.authority_port, args.imds_port, args.nmi_port, args.admin_port, args.arm_port
            ),
        )
        run_forever(stack, stop)
    except SeedError as exc:
        print(f"kv-devstack: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"kv-devstack: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _arm_list(stack: Devstack, as_json: bool) -> None:
    resources = stack.arm_resources()
    if as_json:
        print(json.dumps({"resources": resources}, indent=2))
        return
    for r in resources:
        state = " (updating)" if r["updating"] else ""
        print(f"{r['kind']:<5} {r['resource_group']}/{r['name']}  type {r['identity_type']}{state}")
        print(f"      nodes: {', '.join(sorted(r['nodes'])) or '-'}")
        if r["system_assigned"]:
            print(f"      system-assigned: {r['system_assigned']}")
        print(f"      user-assigned: {', '.join(r['user_assigned']) or '-'}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return _up(args)
    if args.command == "cluster":
        from devstack.cluster.cli import run as run_cluster

        return run_cluster(args)
    try:
        stack = Devstack.load(args.state_dir)
        if args.command == "secret":
            if args.action == "set":
                print(stack.set_secret(args.vault, args.name, args.value, args.content_type))
            elif args.action == "delete":
                stack.delete_secret(args.vault, args.name)
            else:
                stack.set_secret_enabled(
                    args.vault, args.name, args.version, args.action == "enable"
                )
        elif args.command == "sa-token":
            print(
                stack.sa_token(args.namespace, args.service_account, args.audience, args.expires_in)
            )
        elif args.command == "fault":
            if args.clear:
                stack.clear_faults()
            else:
                stack.fault(
                    vault=args.subscription or args.vault,
                    count=args.count,
                    endpoint=args.endpoint,
                    latency_ms=args.latency_ms,
                    rate_429=args.rate_429,
                    rate_503=args.rate_503,
                    drop=args.drop,
                    retry_after=args.retry_after,
                )
        elif args.command == "counters":
            print(json.dumps({"requests": stack.counters()}, indent=2))
            if args.reset:
                stack.reset_counters()
        elif args.command == "arm":
            _arm_list(stack, args.json)
        elif args.command == "revoke":
            stack.revoke(args.identity)
    except DevstackError as exc:
        print(f"kv-devstack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
