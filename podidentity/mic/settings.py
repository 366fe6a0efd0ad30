"""MIC's settings: one frozen dataclass, read once from flags (and a few environment variables)
in `parse_settings`; `--help` is built from the fields' metadata, so a flag cannot exist without
its description. Upstream's flag spellings that mean the same thing are accepted as aliases."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any


def _opt(help: str, *, env: str = "", aliases: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
    return {"help": help, "env": env, "aliases": aliases, "argparse": kw}


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class MicSettings:
    """Everything MIC is told at start; see `python -m podidentity.mic --help`."""

    kubeconfig: Path | None = field(
        default=None,
        metadata=_opt("kubeconfig file; unset: KUBECONFIG, else the in-cluster service account",
                      type=Path),
    )  # fmt: skip
    cloud_config: Path | None = field(
        default=None,
        metadata=_opt(
            "azure.json with subscriptionId, resourceGroup, vmType, tenantId and MIC's ARM "
            "credential (aadClientId/aadClientSecret, or useManagedIdentityExtension with "
            "userAssignedIdentityID); unset: the environment variables SUBSCRIPTION_ID, "
            "RESOURCE_GROUP, VM_TYPE, TENANT_ID, CLIENT_ID, CLIENT_SECRET, USE_MSI, "
            "USER_ASSIGNED_MSI_CLIENT_ID",
            aliases=("--cloudconfig",), type=Path,
        ),
    )  # fmt: skip
    arm_endpoint: str = field(
        default="",
        metadata=_opt("Resource Manager base URL; unset: the cloud's (azure.json `cloud`)",
                      env="ARM_ENDPOINT"),
    )  # fmt: skip
    authority_host: str = field(
        default="",
        metadata=_opt("Entra ID authority for MIC's service principal; unset: the cloud's",
                      env="AZURE_AUTHORITY_HOST"),
    )  # fmt: skip
    ca_bundle: Path | None = field(
        default=None,
        metadata=_opt("extra CA bundle trusted for ARM and Entra ID (private clouds, tests)",
                      env="MIC_CA_BUNDLE", type=Path),
    )  # fmt: skip
    namespaced: bool = field(
        default=True,
        metadata=_opt(
            "match a pod only with bindings and identities in its own namespace; false: "
            "upstream's cluster-wide matching (the identity's `aadpodidentity.k8s.io/Behavior: "
            "namespaced` annotation still restricts it)",
            type=_bool, metavar="BOOL",
        ),
    )  # fmt: skip
    immutable_identities: tuple[str, ...] = field(
        default=(),
        metadata=_opt("comma-separated client ids MIC never removes from a VM or scale set",
                      aliases=("--immutable-user-msis",),
                      type=lambda s: tuple(x.strip().lower() for x in s.split(",") if x.strip())),
    )  # fmt: skip
    resync_interval: float = field(
        default=3600.0,
        metadata=_opt("seconds between full recomputations from the caches (no ARM call, no "
                      "API write when nothing changed)", aliases=("--syncRetryDuration",),
                      type=float),
    )  # fmt: skip
    arm_verify_interval: float = field(
        default=0.0,
        metadata=_opt("seconds between re-reads (GET) of every VM and scale set MIC assigns to, "
                      "to put back identities removed by hand (one GET each per pass); 0: "
                      "never (MIC's own changes need no re-read)", type=float),
    )  # fmt: skip
    refused_retry_interval: float = field(
        default=300.0,
        metadata=_opt("seconds before MIC asks ARM again for an identity it refused", type=float),
    )  # fmt: skip
    arm_concurrency: int = field(
        default=16,
        metadata=_opt("VMs and scale sets updated at once (one PATCH in flight per resource)",
                      type=int),
    )  # fmt: skip
    arm_max_retries: int = field(
        default=5,
        metadata=_opt("attempts after a throttled (429) or failed ARM request", type=int),
    )  # fmt: skip
    api_concurrency: int = field(
        default=16,
        metadata=_opt("API-server writes in flight", aliases=("--createDeleteBatch",), type=int),
    )  # fmt: skip
    leader_election_namespace: str = field(
        default="default",
        metadata=_opt("namespace of the leader election Lease", env="MIC_POD_NAMESPACE"),
    )  # fmt: skip
    leader_election_name: str = field(
        default="aad-pod-identity-mic", metadata=_opt("name of the leader election Lease")
    )
    leader_election_instance: str = field(
        default="",
        metadata=_opt("this replica's name in the Lease; unset: POD_NAME, else the hostname",
                      env="POD_NAME"),
    )  # fmt: skip
    leader_election_duration: float = field(
        default=15.0, metadata=_opt("seconds a Lease stays valid without renewal", type=float)
    )
    probe_addr: str = field(
        default=":8080",
        metadata=_opt("host:port for /healthz (200 \"Active\" when leading); empty disables"),
    )  # fmt: skip
    log_format: str = field(
        default="text", metadata=_opt("log line format", choices=("text", "json"))
    )
    log_level: str = field(
        default="info",
        metadata=_opt("least severe level logged", choices=("debug", "info", "warning")),
    )

    @property
    def instance(self) -> str:
        return self.leader_election_instance or socket.gethostname()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kv-mic",
        description="Managed Identity Controller: assigns the identities of "
        "AzureIdentityBindings to the pods that select them and to their VMs or scale sets.",
    )
    defaults = MicSettings()
    for f in fields(MicSettings):
        meta = f.metadata
        option = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name) if f.default is not MISSING else None
        env = meta.get("env") or ""
        if env and os.environ.get(env):
            raw = os.environ[env]
            convert = meta["argparse"].get("type")
            default = convert(raw) if convert is not None else raw
        help_text = str(meta["help"]).replace("%", "%%") + " (default: %(default)s"
        help_text += f"; env {env})" if env else ")"
        parser.add_argument(
            option, *meta.get("aliases", ()), dest=f.name, default=default, help=help_text,
            **meta["argparse"],
        )  # fmt: skip
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> MicSettings:
    return MicSettings(**vars(build_parser().parse_args(argv)))
