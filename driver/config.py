"""Settings: one frozen dataclass, read from flags and the environment only here."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DRIVER_NAME = "kv.csi.azure.com"


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "2m", "1h", "500ms" (the Go-style durations operators type)."""
    value = text.strip().lower()
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if value.endswith(suffix) and value[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(value[: -len(suffix)]) * scale
    if value.replace(".", "", 1).isdigit():
        return float(value)
    raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 2m, 0)")


@dataclass(frozen=True)
class Settings:
    endpoint: str = "unix:///csi/csi.sock"
    node_id: str = ""
    driver_name: str = DEFAULT_DRIVER_NAME
    state_dir: Path = Path("/run/kv-driver")
    mount_mode: str = "tmpfs"  # "tmpfs" or "dir"
    tmpfs_size: str = "4m"
    cloud_config: Path | None = None
    metrics_addr: str = ""  # host:port; "" disables
    log_format: str = "text"
    log_level: str = "info"
    registration_dir: Path | None = None
    kubelet_registration_path: str = ""
    flexvolume_socket: Path | None = None
    rotation_poll_interval: float = 120.0  # seconds; 0 disables rotation
    fetch_concurrency: int = 32  # Key Vault requests in flight per volume
    nmi_deadline: float = 60.0  # seconds to keep retrying NMI while MIC assigns the identity
    request_timeout: float = 10.0  # seconds for one Key Vault or token request


def add_daemon_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    d = Settings()
    parser.add_argument("--endpoint", default=env("CSI_ENDPOINT", d.endpoint))
    parser.add_argument("--nodeid", dest="node_id", default=env("KUBE_NODE_NAME", d.node_id))
    parser.add_argument("--driver-name", default=d.driver_name)
    parser.add_argument("--state-dir", type=Path, default=d.state_dir)
    parser.add_argument("--mount-mode", choices=("tmpfs", "dir"), default=d.mount_mode)
    parser.add_argument("--tmpfs-size", default=d.tmpfs_size)
    parser.add_argument("--cloud-config", type=Path, default=env("KV_CLOUD_CONFIG") or None)
    parser.add_argument("--metrics-addr", default=d.metrics_addr)
    parser.add_argument("--log-format", choices=("json", "text"), default=d.log_format)
    parser.add_argument("--log-level", choices=("debug", "info", "warning"), default=d.log_level)
    parser.add_argument("--registration-dir", type=Path, default=None)
    parser.add_argument("--kubelet-registration-path", default=d.kubelet_registration_path)
    parser.add_argument("--flexvolume-socket", type=Path, default=None)
    parser.add_argument(
        "--rotation-poll-interval", type=parse_duration, default=d.rotation_poll_interval
    )
    parser.add_argument("--fetch-concurrency", type=int, default=d.fetch_concurrency)
    parser.add_argument("--nmi-deadline", type=parse_duration, default=d.nmi_deadline)
    parser.add_argument("--request-timeout", type=parse_duration, default=d.request_timeout)


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = Settings.__dataclass_fields__
    return Settings(**{k: v for k, v in vars(args).items() if k in names})


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="kv-csi-driver")
    add_daemon_flags(parser)
    return settings_from_args(parser.parse_args(argv))
