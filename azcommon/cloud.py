"""Azure clouds: the known sovereign clouds and custom clouds from a cloud-configuration file.

A cloud-configuration file is JSON:

    {"name": "DevStack",
     "authority_host": "https://login.example",          # Entra ID authority (https)
     "keyvault_resource": "https://vault.azure.net",      # token audience for Key Vault
     "keyvault_dns_suffix": "vault.example",              # vault URL = https://<name>.<suffix>
     "vault_urls": {"testkv": "https://127.0.0.1:8443"},  # optional per-vault URL overrides
     "ca_bundle": "/etc/kv/ca.pem",                       # optional extra trust
     "imds_endpoint": "http://169.254.169.254/metadata/identity/oauth2/token"}  # optional
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from azcommon.errors import InvalidArgument

DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254/metadata/identity/oauth2/token"


@dataclass(frozen=True)
class Cloud:
    name: str
    authority_host: str
    keyvault_resource: str
    keyvault_dns_suffix: str
    vault_urls: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ca_bundle: str = ""
    imds_endpoint: str = DEFAULT_IMDS_ENDPOINT

    def vault_url(self, vault_name: str) -> str:
        url = self.vault_urls.get(vault_name.lower())
        return url.rstrip("/") if url else f"https://{vault_name}.{self.keyvault_dns_suffix}"

    @property
    def scope(self) -> str:
        return self.keyvault_resource.rstrip("/") + "/.default"


KNOWN_CLOUDS: dict[str, Cloud] = {
    c.name.lower(): c
    for c in (
        Cloud(
            "AzurePublicCloud",
            "https://login.microsoftonline.com",
            "https://vault.azure.net",
            "vault.azure.net",
        ),
        Cloud(
            "AzureUSGovernmentCloud",
            "https://login.microsoftonline.us",
            "https://vault.usgovcloudapi.net",
            "vault.usgovcloudapi.net",
        ),
        Cloud(
            "AzureChinaCloud",
            "https://login.chinacloudapi.cn",
            "https://vault.azure.cn",
            "vault.azure.cn",
        ),
        Cloud(
            "AzureGermanCloud",
            "https://login.microsoftonline.de",
            "https://vault.microsoftazure.de",
            "vault.microsoftazure.de",
        ),
    )
}


def load_cloud_config(path: Path) -> Cloud:
    try:
        raw: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cloud config {path}: cannot read JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"cloud config {path}: expected a JSON object")
    missing = [k for k in ("authority_host", "keyvault_resource") if not raw.get(k)]
    if missing:
        raise InvalidArgument(f"cloud config {path}: missing {', '.join(missing)}")
    urls = raw.get("vault_urls") or {}
    if not isinstance(urls, dict):
        raise InvalidArgument(f"cloud config {path}: vault_urls must be an object")
    return Cloud(
        name=str(raw.get("name") or "Custom"),
        authority_host=str(raw["authority_host"]).rstrip("/"),
        keyvault_resource=str(raw["keyvault_resource"]),
        keyvault_dns_suffix=str(raw.get("keyvault_dns_suffix") or "vault.azure.net"),
        vault_urls=MappingProxyType({str(k).lower(): str(v) for k, v in urls.items()}),
        ca_bundle=str(raw.get("ca_bundle") or ""),
        imds_endpoint=str(raw.get("imds_endpoint") or DEFAULT_IMDS_ENDPOINT),
    )


class Clouds:
    """Resolves a volume's `cloudName` against the daemon's default cloud."""

    def __init__(self, default: Cloud) -> None:
        self.default = default

    def resolve(self, cloud_name: str) -> Cloud:
        if not cloud_name or cloud_name.lower() == self.default.name.lower():
            return self.default
        cloud = KNOWN_CLOUDS.get(cloud_name.lower())
        if cloud is None:
            known = ", ".join(c.name for c in KNOWN_CLOUDS.values())
            raise InvalidArgument(f"cloudName {cloud_name!r} is not a known cloud ({known})")
        return cloud
