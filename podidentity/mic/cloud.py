"""Where MIC's ARM access comes from: the cluster's azure.json, or the environment, as upstream.

azure.json keys read: `cloud`, `tenantId`, `subscriptionId`, `resourceGroup`, `vmType`,
`aadClientId`, `aadClientSecret`, `useManagedIdentityExtension`, `userAssignedIdentityID`.
Environment variables (when no file is given): `CLOUD`, `TENANT_ID`, `SUBSCRIPTION_ID`,
`RESOURCE_GROUP`, `VM_TYPE`, `CLIENT_ID`, `CLIENT_SECRET`, `USE_MSI`,
`USER_ASSIGNED_MSI_CLIENT_ID`.

The credential is a service principal (client id + secret) or a managed identity (the VM's own,
or the user-assigned one named by `userAssignedIdentityID`). The secret is held with
`repr=False` and never logged; errors name the key to fix, never its value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# cloud name (lower case) -> (Resource Manager, Entra ID authority)
CLOUDS: dict[str, tuple[str, str]] = {
    "azurepubliccloud": ("https://management.azure.com", "https://login.microsoftonline.com"),
    "azureusgovernmentcloud": (
        "https://management.usgovcloudapi.net", "https://login.microsoftonline.us",
    ),
    "azurechinacloud": ("https://management.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
}  # fmt: skip
ARM_SCOPE = "https://management.azure.com/.default"


class CloudConfigError(ValueError):
    """azure.json or the environment cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class CloudConfig:
    """The subscription and resource group of the nodes, and MIC's own ARM credential."""

    cloud: str
    tenant_id: str
    subscription_id: str
    resource_group: str
    vm_type: str = "standard"
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    use_managed_identity: bool = False
    user_assigned_identity_id: str = ""

    @property
    def arm_endpoint(self) -> str:
        return CLOUDS.get(self.cloud.lower(), CLOUDS["azurepubliccloud"])[0]

    @property
    def authority_host(self) -> str:
        return CLOUDS.get(self.cloud.lower(), CLOUDS["azurepubliccloud"])[1]

    @property
    def own_identity(self) -> str:
        """MIC's own user-assigned identity (client id), which it must never unassign."""
        return self.user_assigned_identity_id.lower() if self.use_managed_identity else ""


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def from_mapping(raw: Mapping[str, Any], where: str) -> CloudConfig:
    config = CloudConfig(
        cloud=str(raw.get("cloud") or "AzurePublicCloud"),
        tenant_id=str(raw.get("tenantId") or ""),
        subscription_id=str(raw.get("subscriptionId") or ""),
        resource_group=str(raw.get("resourceGroup") or ""),
        vm_type=str(raw.get("vmType") or "standard").lower(),
        client_id=str(raw.get("aadClientId") or ""),
        client_secret=str(raw.get("aadClientSecret") or ""),
        use_managed_identity=_flag(raw.get("useManagedIdentityExtension")),
        user_assigned_identity_id=str(raw.get("userAssignedIdentityID") or ""),
    )
    missing = [k for k, v in (("subscriptionId", config.subscription_id),
                              ("resourceGroup", config.resource_group)) if not v]  # fmt: skip
    if not config.use_managed_identity:
        missing += [k for k, v in (("tenantId", config.tenant_id),
                                   ("aadClientId", config.client_id),
                                   ("aadClientSecret", config.client_secret)) if not v]  # fmt: skip
    if missing:
        raise CloudConfigError(
            f"{where}: {', '.join(missing)} missing; MIC needs the nodes' subscription and "
            "resource group, and either a service principal (aadClientId, aadClientSecret, "
            "tenantId) or useManagedIdentityExtension: true"
        )
    return config


_ENV = {
    "cloud": "CLOUD", "tenantId": "TENANT_ID", "subscriptionId": "SUBSCRIPTION_ID",
    "resourceGroup": "RESOURCE_GROUP", "vmType": "VM_TYPE", "aadClientId": "CLIENT_ID",
    "aadClientSecret": "CLIENT_SECRET", "useManagedIdentityExtension": "USE_MSI",
    "userAssignedIdentityID": "USER_ASSIGNED_MSI_CLIENT_ID",
}  # fmt: skip


def load_cloud_config(path: Path | None, env: Mapping[str, str] | None = None) -> CloudConfig:
    """From azure.json when `path` is given, else from the environment variables."""
    if path is not None:
        try:
            raw = json.loads(Path(path).read_text())
        except OSError as exc:
            raise CloudConfigError(
                f"cannot read the cloud config {path}: {exc.strerror}; mount the node's "
                "azure.json there or pass the settings as environment variables"
            ) from None
        except ValueError:
            raise CloudConfigError(f"the cloud config {path} is not valid JSON") from None
        if not isinstance(raw, dict):
            raise CloudConfigError(f"the cloud config {path} must hold a JSON object")
        return from_mapping(raw, str(path))
    source = os.environ if env is None else env
    return from_mapping(
        {key: source.get(name, "") for key, name in _ENV.items()},
        "the environment (no --cloud-config)",
    )


def make_credential(config: CloudConfig, authority_host: str, ca_bundle: str | None) -> Any:
    """An azure-identity credential for ARM, in the form the config asks for."""
    from azure.identity import ClientSecretCredential, ManagedIdentityCredential

    if config.use_managed_identity:
        if config.user_assigned_identity_id:
            return ManagedIdentityCredential(client_id=config.user_assigned_identity_id)
        return ManagedIdentityCredential()
    kwargs: dict[str, Any] = {"authority": authority_host}
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
        # A private authority has no instance-discovery metadata to fetch.
        kwargs["disable_instance_discovery"] = True
    return ClientSecretCredential(
        config.tenant_id, config.client_id, config.client_secret, **kwargs
    )
