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
import os
import stat
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
    `vault_urls` (per-vault URL overrides) is honoured too. Messages never quote the content.
    The file decides where credentials go, so it must be a regular file (not a symlink) owned by
    root and writable by nobody else."""
    where = f"cloud environment file {path}"
    try:
        # O_NONBLOCK: a FIFO named here must not hang the caller; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidArgument(f"{where}: cannot read it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{where} is not a regular file")
        # It decides where credentials are sent: only root may have written it.
        if st.st_mode & 0o022 or (os.geteuid() == 0 and st.st_uid != 0):
            raise InvalidArgument(
                f"{where} must be owned by root and not writable by group or others"
            )
        data = f.read(MAX_ENVIRONMENT_FILE + 1)
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
    the daemon's default cloud. Environment files are read per volume, cached by path and what
    `lstat` says of them: no process-wide state, two volumes may use two different files."""

    def __init__(self, default: Cloud) -> None:
        self.default = default
        self._files: dict[str, tuple[tuple[float, int, int, int, int], Cloud]] = {}
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
            st = path.lstat()
        except OSError as exc:
            raise InvalidArgument(
                f"cloud environment file {path}: cannot read it ({exc.strerror})"
            ) from None
        stamp = (st.st_mtime, st.st_size, st.st_mode, st.st_uid, st.st_ino)
        with self._lock:
            cached = self._files.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        cloud = load_environment_file(path)
        with self._lock:
            self._files[str(path)] = (stamp, cloud)
        return cloud
