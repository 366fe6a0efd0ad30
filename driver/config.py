"""Settings: one frozen dataclass, read from flags and the environment only here."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """Everything the node plugin is configured with: parsed once from flags and environment by
    the composition root and passed in; nothing else reads flags or the environment."""

    endpoint: str = field(
        default="unix:///csi/csi.sock",
        metadata={"help": "CSI endpoint to serve (env CSI_ENDPOINT)"},
    )
    node_id: str = field(
        default="",
        metadata={"help": "node name reported to kubelet (env KUBE_NODE_NAME; default: hostname)"},
    )
    driver_name: str = field(
        default=DEFAULT_DRIVER_NAME,
        metadata={"help": "CSI driver name, as in the CSIDriver object"},
    )
    state_dir: Path = field(
        default=Path("/run/kv-driver"),
        metadata={
            "help": "volume records (never secrets); rotation credentials too when it is on a tmpfs"
        },
    )
    mount_mode: str = field(
        default="tmpfs",
        metadata={
            "help": "tmpfs: a private tmpfs per volume; dir: plain directories (unprivileged runs)"
        },
    )
    tmpfs_size: str = field(
        default="4m", metadata={"help": "size of each volume's tmpfs; a volume may fill half of it"}
    )
    cloud_config: Path | None = field(
        default=None,
        metadata={
            "help": "JSON cloud definition (endpoints, CA bundle) for custom clouds (env KV_CLOUD_CONFIG)"
        },
    )
    metrics_addr: str = field(
        default="", metadata={"help": "host:port for /metrics and /healthz; empty disables"}
    )
    log_format: str = field(default="text", metadata={"help": "log line format"})
    log_level: str = field(default="info", metadata={"help": "least severe level logged"})
    registration_dir: Path | None = field(
        default=None,
        metadata={"help": "kubelet's plugins_registry directory: register with kubelet through it"},
    )
    kubelet_registration_path: str = field(
        default="",
        metadata={
            "help": "the CSI socket path as kubelet sees it on the host (default: --endpoint's path)"
        },
    )
    flexvolume_socket: Path | None = field(
        default=None,
        metadata={
            "help": "unix socket the azure~kv/kv FlexVolume shim forwards to; unset disables"
        },
    )
    provider_socket: Path | None = field(
        default=None,
        metadata={
            "help": "unix socket to serve the secrets-store CSI driver's provider API on (e.g."
            " /var/run/secrets-store-csi-providers/azure.sock, in place of provider-azure);"
            " unset disables"
        },
    )
    provider_fresh_for: float = field(
        default=30.0,
        metadata={
            "help": "seconds a provider Mount answer is reused for other Mounts of the same"
            " objects as the same identity (30s, 2m); 0: only Mounts in flight share"
        },
    )
    rotation_poll_interval: float = field(
        default=120.0,
        metadata={
            "help": "seconds between checks for new versions (90s, 2m, 1h); 0 disables rotation"
        },
    )
    fetch_concurrency: int = field(
        default=32, metadata={"help": "Key Vault requests in flight per volume"}
    )
    nmi_deadline: float = field(
        default=60.0,
        metadata={"help": "seconds to keep retrying NMI while MIC assigns the pod's identity"},
    )
    request_timeout: float = field(
        default=10.0, metadata={"help": "seconds for one Key Vault or token request"}
    )
    # Key Vault's published limit: 4,000 secret/software-key GETs per 10 s per vault per region
    # (https://learn.microsoft.com/azure/key-vault/general/service-limits).
    keyvault_rate_limit: int = field(
        default=4000,
        metadata={
            "help": "Key Vault requests this node sends each vault per --keyvault-rate-window,"
            " publish and rotation together (Key Vault allows 4000 per 10s per vault); 0: no limit"
        },
    )
    keyvault_rate_window: float = field(
        default=10.0, metadata={"help": "the window of --keyvault-rate-limit (10s)"}
    )
    https_proxy: str = field(
        default="",
        repr=False,  # may carry proxy credentials
        metadata={
            "help": "HTTP proxy for Key Vault and Entra ID, never for NMI or IMDS "
            "(env HTTPS_PROXY / https_proxy)"
        },
    )
    no_proxy: str = field(
        default="",
        metadata={
            "help": "hosts that bypass --https-proxy: names, .domains, IPs, CIDRs, * "
            "(env NO_PROXY / no_proxy)"
        },
    )
    kubeconfig: Path | None = field(
        default=None,
        metadata={
            "help": "kubeconfig for the API server (FlexVolume pod verification, Events); unset:"
            " the in-cluster service account when running in a pod, else no API access"
        },
    )
    flexvolume_pod_source: str = field(
        default="api",
        metadata={
            "help": "where a FlexVolume pod's name, namespace, service account and fsGroup come"
            " from: api (this node's pods, looked up by the uid in the mount dir; options that"
            " disagree are refused) or kubelet-options (trusted as given: a pod can claim another"
            " pod's identity; only for runs without an API server)"
        },
    )
    flexvolume_pod_wait: float = field(
        default=10.0,
        metadata={
            "help": "seconds a FlexVolume mount waits for its pod to appear in the node's pod"
            " cache before failing with a retryable error"
        },
    )
    in_cluster: bool = field(
        default=False,
        metadata={"help": "running in a pod (KUBERNETES_SERVICE_HOST is set); not a flag"},
    )
    vm_identity_policy: Path | None = field(
        default=None,
        metadata={
            "help": "YAML file mapping namespaces to the VM managed identities (client ids, "
            '"system", "*") their volumes may use; unset: every pod may use every VM identity'
        },
    )


def _help(name: str) -> str:
    text = str(Settings.__dataclass_fields__[name].metadata["help"])
    return text.replace("%", "%%") + " (default: %(default)s)"


def add_daemon_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    d = Settings()

    def flag(name: str, *args: str, **kw: Any) -> None:
        option = "--" + name.replace("_", "-")
        parser.add_argument(*(args or (option,)), dest=name, help=_help(name), **kw)

    flag("endpoint", default=env("CSI_ENDPOINT", d.endpoint))
    flag("node_id", "--nodeid", default=env("KUBE_NODE_NAME", d.node_id))
    flag("driver_name", default=d.driver_name)
    flag("state_dir", type=Path, default=d.state_dir)
    flag("mount_mode", choices=("tmpfs", "dir"), default=d.mount_mode)
    flag("tmpfs_size", default=d.tmpfs_size)
    flag("cloud_config", type=Path, default=env("KV_CLOUD_CONFIG") or None)
    flag("metrics_addr", default=d.metrics_addr)
    flag("log_format", choices=("json", "text"), default=d.log_format)
    flag("log_level", choices=("debug", "info", "warning"), default=d.log_level)
    flag("registration_dir", type=Path, default=None)
    flag("kubelet_registration_path", default=d.kubelet_registration_path)
    flag("flexvolume_socket", type=Path, default=None)
    flag("provider_socket", type=Path, default=None)
    flag("provider_fresh_for", type=parse_duration, default=d.provider_fresh_for)
    flag("rotation_poll_interval", type=parse_duration, default=d.rotation_poll_interval)
    flag("fetch_concurrency", type=int, default=d.fetch_concurrency)
    flag("nmi_deadline", type=parse_duration, default=d.nmi_deadline)
    flag("request_timeout", type=parse_duration, default=d.request_timeout)
    flag("keyvault_rate_limit", type=int, default=d.keyvault_rate_limit)
    flag("keyvault_rate_window", type=parse_duration, default=d.keyvault_rate_window)
    flag("https_proxy", default=env("HTTPS_PROXY") or env("https_proxy") or d.https_proxy)
    flag("no_proxy", default=env("NO_PROXY") or env("no_proxy") or d.no_proxy)
    flag("kubeconfig", type=Path, default=None)
    flag(
        "flexvolume_pod_source", choices=("api", "kubelet-options"), default=d.flexvolume_pod_source
    )
    flag("flexvolume_pod_wait", type=parse_duration, default=d.flexvolume_pod_wait)
    parser.set_defaults(in_cluster=bool(env("KUBERNETES_SERVICE_HOST")))
    flag("vm_identity_policy", type=Path, default=env("KV_VM_IDENTITY_POLICY") or None)


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = Settings.__dataclass_fields__
    return Settings(**{k: v for k, v in vars(args).items() if k in names})


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="kv-csi-driver", description="Azure Key Vault CSI node plugin and FlexVolume bridge."
    )
    add_daemon_flags(parser)
    return settings_from_args(parser.parse_args(argv))
