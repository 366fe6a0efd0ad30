"""NMI's settings: one frozen dataclass; flags (and their `--help`) come from its fields.

Only this module reads flags and the environment (`NODE_NAME` from the DaemonSet's downward API,
`KUBECONFIG`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Everything NMI is configured with (see `kv-nmi --help`)."""

    node: str = field(default="", metadata={"help": "this node's name (env NODE_NAME); required"})
    listen_address: str = field(
        default="127.0.0.1",
        metadata={"help": "address NMI listens on (loopback: only this node can call it)"},
    )
    port: int = field(default=2579, metadata={"help": "port for token and proxied IMDS requests"})
    intercept_address: str = field(
        default="",
        metadata={
            "help": "where the nat rules send pod IMDS traffic (default: --listen-address; "
            "127.0.0.1 needs route_localnet=1 on pod interfaces, as kube-proxy sets)"
        },
    )
    metadata_ip: str = field(
        default="169.254.169.254", metadata={"help": "the IMDS address pods call (nat match)"}
    )
    metadata_port: int = field(default=80, metadata={"help": "the IMDS port pods call"})
    imds_endpoint: str = field(
        default="http://169.254.169.254",
        metadata={"help": "IMDS base URL NMI itself calls for tokens and proxies to"},
    )
    authority_host: str = field(
        default="https://login.microsoftonline.com",
        metadata={"help": "Entra ID authority for service-principal identities without adEndpoint"},
    )
    ca_bundle: str = field(
        default="", metadata={"help": "extra CA bundle (PEM) trusted for the authority"}
    )
    kubeconfig: Path | None = field(
        default=None, metadata={"help": "kubeconfig (env KUBECONFIG; default: in-cluster)"}
    )
    operation_mode: str = field(
        default="standard",
        metadata={
            "help": "standard: identities from AzureAssignedIdentity (MIC); managed: straight "
            "from the bindings in the pod's namespace",
            "choices": ("standard", "managed"),
        },
    )
    cluster_wide: bool = field(
        default=False,
        metadata={
            "help": "let a binding or identity in another namespace apply to a pod (upstream's "
            "default; ours is namespaced)"
        },
    )
    block_instance_metadata: bool = field(
        default=False, metadata={"help": "answer 403 to /metadata/instance requests from pods"}
    )
    metadata_header_required: bool = field(
        default=True, metadata={"help": "require the header Metadata: true on pod requests"}
    )
    assignment_wait: float = field(
        default=10.0,
        metadata={
            "help": "seconds a pod request waits for MIC to finish assigning before answering "
            "503 with Retry-After"
        },
    )
    retry_after: int = field(
        default=5, metadata={"help": "seconds in Retry-After while MIC is still assigning"}
    )
    token_cache: bool = field(
        default=True,
        metadata={"help": "cache tokens per (identity, resource); off fetches every time"},
    )
    refresh_margin: float = field(
        default=300.0,
        metadata={"help": "refresh a cached token this many seconds before it expires"},
    )
    request_timeout: float = field(
        default=10.0, metadata={"help": "seconds for one IMDS or Entra ID request"}
    )
    token_deadline: float = field(
        default=30.0,
        metadata={"help": "seconds to keep retrying IMDS (404/429/5xx) for one token"},
    )
    iptables: bool = field(
        default=True, metadata={"help": "install the nat rules that send pod IMDS traffic here"}
    )
    iptables_interval: float = field(
        default=60.0, metadata={"help": "seconds between nat rule reconciliations"}
    )
    iptables_chain: str = field(default="aad-metadata", metadata={"help": "the nat chain NMI owns"})
    probe_address: str = field(
        default="0.0.0.0:8085", metadata={"help": "host:port for /healthz; empty disables"}
    )
    metrics_address: str = field(
        default="0.0.0.0:9090", metadata={"help": "host:port for /metrics; empty disables"}
    )
    log_format: str = field(
        default="text", metadata={"help": "log line format", "choices": ("text", "json")}
    )
    log_level: str = field(
        default="info",
        metadata={"help": "least severe level logged", "choices": ("debug", "info", "warning")},
    )

    @property
    def nat_target(self) -> str:
        return self.intercept_address or self.listen_address


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (true or false)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kv-nmi",
        description="Pod identity node component: tokens for pods' Azure identities "
        "(aad-pod-identity NMI compatible).",
    )
    env = os.environ.get
    defaults: dict[str, Any] = {
        "node": env("NODE_NAME", ""),
        "cluster_wide": False,
        "kubeconfig": Path(env("KUBECONFIG", "")) if env("KUBECONFIG") else None,
    }
    for f in fields(Settings):
        default = defaults.get(f.name, f.default if f.default is not MISSING else None)
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        kind: type[Any] = type(f.default)
        if kind is bool:
            kwargs.update(type=_bool, nargs="?", const=True, metavar="BOOL")
        elif kind in (int, float):
            kwargs["type"] = kind
        elif f.name == "kubeconfig":
            kwargs["type"] = Path
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        text = str(f.metadata["help"]).replace("%", "%%")
        kwargs["help"] = f"{text} (default: %(default)s)"
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    # Upstream's FORCENAMESPACED=true asked for what is our default; FORCENAMESPACED=false does
    # not turn cluster-wide matching on: only --cluster-wide does, explicitly.
    settings = Settings(**vars(build_parser().parse_args(argv)))
    if not settings.node:
        raise SystemExit("kv-nmi: --node (or env NODE_NAME) is required")
    return settings
