"""Composition root: parse settings once, build the parts, run.

kv-csi-driver [daemon flags]                 the node plugin (CSI + FlexVolume bridge)
kv-csi-driver mount-once --target DIR ...    one publish through the engine, for operators
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from azcommon.errors import KvError
from azcommon.log import setup_logging
from driver.config import add_daemon_flags, settings_from_args


def _mount_once(argv: Sequence[str]) -> int:
    from driver.app import build_core
    from driver.contract import PublishRequest

    parser = argparse.ArgumentParser(
        prog="kv-csi-driver mount-once",
        description="Publish one volume through the engine and print what was written "
        "(names, sizes, modes, versions; never contents).",
    )
    add_daemon_flags(parser)
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument(
        "--attributes", type=Path, required=True, help="JSON or YAML map of volume attributes"
    )
    parser.add_argument("--secrets", type=Path, help="JSON or YAML map of secrets (clientid, ...)")
    parser.add_argument("--volume-id", default="")
    parser.add_argument("--pod-name", default="")
    parser.add_argument("--pod-namespace", default="")
    parser.add_argument("--pod-uid", default="")
    parser.add_argument("--service-account", default="")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    setup_logging(settings.log_format, settings.log_level)

    import yaml

    def load_map(path: Path) -> dict[str, str]:
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise SystemExit(f"{path}: expected a map of strings")
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}

    attributes = load_map(args.attributes)
    for key, value in (
        ("csi.storage.k8s.io/pod.name", args.pod_name),
        ("csi.storage.k8s.io/pod.namespace", args.pod_namespace),
        ("csi.storage.k8s.io/pod.uid", args.pod_uid),
        ("csi.storage.k8s.io/serviceAccount.name", args.service_account),
    ):
        if value:
            attributes[key] = value
    core = build_core(settings)
    try:
        core.upkeep.restore()
        result = core.engine.publish(
            PublishRequest(
                volume_id=args.volume_id or f"mount-once-{args.target.name}",
                target_path=args.target,
                attributes=attributes,
                secrets=load_map(args.secrets) if args.secrets else {},
            )
        )
    except KvError as exc:
        print(json.dumps({"error": exc.code, "message": str(exc)}), file=sys.stderr)
        return 1
    finally:
        core.close()
    print(
        json.dumps(
            {
                "volume_id": result.volume_id,
                "target": str(result.target_path),
                "files": [
                    {"path": f.path, "size": f.size, "mode": oct(f.mode)} for f in result.files
                ],
                "versions": result.versions,
            },
            indent=2,
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "mount-once":
        return _mount_once(args[1:])
    from driver.daemon import run_daemon

    parser = argparse.ArgumentParser(
        prog="kv-csi-driver",
        description="Azure Key Vault volume driver: CSI node plugin and azure/kv FlexVolume "
        "bridge. Subcommand: mount-once (see `kv-csi-driver mount-once --help`).",
    )
    add_daemon_flags(parser)
    settings = settings_from_args(parser.parse_args(args))
    setup_logging(settings.log_format, settings.log_level)
    return run_daemon(settings)


if __name__ == "__main__":
    sys.exit(main())
