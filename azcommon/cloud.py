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
import threading
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


AZURE_STACK_CLOUD = "AzureStackCloud"
MAX_ENVIRONMENT_FILE = 64 * 1024


def load_environment_file(path: Path) -> Cloud:
    """A custom cloud from an Azure environment file, as provider-azure reads it for
    `cloudName: AzureStackCloud` + `cloudEnvFileName` (go-autorest's `Environment` JSON):
    `name`, `activeDirectoryEndpoint` (authority), `keyVaultDNSSuffix` (vault URLs),
    `resourceIdentifiers.keyVault` or else `keyVaultEndpoint` (the token audience). Our own
    `vault_urls` (per-vault URL overrides) is honoured too. Messages never quote the content."""
    where = f"cloud environment file {path}"
    try:
        with path.open("rb") as f:
            if not path.is_file():
                raise InvalidArgument(f"{where} is not a regular file")
            data = f.read(MAX_ENVIRONMENT_FILE + 1)
    except OSError as exc:
        raise InvalidArgument(f"{where}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_ENVIRONMENT_FILE:
        raise InvalidArgument(f"{where} is larger than {MAX_ENVIRONMENT_FILE} bytes")
    try:
        raw: Any = json.loads(data)
    except ValueError:
        raise InvalidArgument(f"{where} is not valid JSON") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: expected a JSON object")
    ids = raw.get("resourceIdentifiers")
    resource = (ids.get("keyVault") if isinstance(ids, dict) else None) or raw.get(
        "keyVaultEndpoint"
    )
    fields = {
        "activeDirectoryEndpoint": raw.get("activeDirectoryEndpoint"),
        "keyVaultDNSSuffix": raw.get("keyVaultDNSSuffix"),
        "resourceIdentifiers.keyVault or keyVaultEndpoint": resource,
    }
    missing = [k for k, v in fields.items() if not isinstance(v, str) or not v]
    if missing:
        raise InvalidArgument(f"{where}: missing {', '.join(missing)}")
    urls = raw.get("vault_urls") or {}
    if not isinstance(urls, dict):
        raise InvalidArgument(f"{where}: vault_urls must be an object")
    authority = str(fields["activeDirectoryEndpoint"]).rstrip("/")
    if not authority.startswith("https://"):
        raise InvalidArgument(f"{where}: activeDirectoryEndpoint must be an https URL")
    return Cloud(
        name=str(raw.get("name") or AZURE_STACK_CLOUD),
        authority_host=authority,
        keyvault_resource=str(resource),
        keyvault_dns_suffix=str(fields["keyVaultDNSSuffix"]).strip(".").lstrip("."),
        vault_urls=MappingProxyType({str(k).lower(): str(v) for k, v in urls.items()}),
    )


class Clouds:
    """Resolves a volume's `cloudName` (and, for AzureStackCloud, its environment file) against
    the daemon's default cloud. Environment files are read per volume, cached by (path, mtime,
    size): no process-wide state, two volumes may use two different files."""

    def __init__(self, default: Cloud) -> None:
        self.default = default
        self._files: dict[str, tuple[tuple[float, int], Cloud]] = {}
        self._lock = threading.Lock()

    def resolve(self, cloud_name: str, env_file: str = "") -> Cloud:
        if env_file:
            return self._from_file(Path(env_file))
        if not cloud_name or cloud_name.lower() == self.default.name.lower():
            return self.default
        cloud = KNOWN_CLOUDS.get(cloud_name.lower())
        if cloud is None:
            known = ", ".join(c.name for c in KNOWN_CLOUDS.values())
            raise InvalidArgument(f"cloudName {cloud_name!r} is not a known cloud ({known})")
        return cloud

    def _from_file(self, path: Path) -> Cloud:
        try:
            st = path.stat()
        except OSError as exc:
            raise InvalidArgument(
                f"cloud environment file {path}: cannot read it ({exc.strerror})"
            ) from None
        stamp = (st.st_mtime, st.st_size)
        with self._lock:
            cached = self._files.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        cloud = load_environment_file(path)
        with self._lock:
            self._files[str(path)] = (stamp, cloud)
        return cloud
