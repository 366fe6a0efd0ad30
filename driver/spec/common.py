"""The settings every volume has, whatever its objects and identity: vault, tenant, cloud,
the pod kubelet names, and the NMI port."""

from __future__ import annotations

import posixpath
import re

from azcommon.cloud import AZURE_STACK_CLOUD
from azcommon.errors import InvalidArgument
from driver.model import DEFAULT_NMI_PORT, FileContent, PodInfo
from driver.spec.keys import CSI, FLEX, Keys, quote

_VAULT_CHARS = re.compile(r"[A-Za-z0-9-]+")
_TENANT = re.compile(r"[A-Za-z0-9.-]{1,253}")  # a GUID, a domain name, or "adfs"
_CLOUD = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_K8S_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
_UID = re.compile(r"[A-Za-z0-9-]{1,64}")
DIGITS = re.compile(r"[0-9]{1,6}")


def vault_name(attrs: Keys) -> str:
    name = attrs.get("keyvaultname")
    key = attrs.name("keyvaultname")
    if not name:
        raise InvalidArgument(f"{key} is required: the name of the Key Vault to read from")
    check_vault(name, key)
    return name


def check_vault(name: str, key: str) -> None:
    """Key Vault's own rules for a vault name; raises naming `key`."""
    problem = ""
    if not 3 <= len(name) <= 24:
        problem = "must be 3 to 24 characters long"
    elif not _VAULT_CHARS.fullmatch(name):
        problem = "may contain only letters, digits and hyphens"
    elif not name[0].isalpha():
        problem = "must start with a letter"
    elif not name[-1].isalnum():
        problem = "must end with a letter or digit"
    elif "--" in name:
        problem = 'must not contain "--"'
    if problem:
        raise InvalidArgument(f"{key} {quote(name)} is not a valid vault name: it {problem}")


def tenant(attrs: Keys) -> str:
    value = attrs.get("tenantid")
    key = attrs.name("tenantid")
    if not value:
        raise InvalidArgument(f"{key} is required: the Entra ID tenant (directory) id of the vault")
    if not _TENANT.fullmatch(value):
        raise InvalidArgument(
            f"{key} {quote(value)} is not a valid tenant id (a GUID or domain name)"
        )
    return value


def cloud_name(attrs: Keys) -> str:
    cloud = attrs.get("cloudname")
    if cloud and not _CLOUD.fullmatch(cloud):
        raise InvalidArgument(
            f"{attrs.name('cloudname')} {quote(cloud)} is not a valid cloud name "
            "(e.g. AzurePublicCloud)"
        )
    return cloud


def cloud_env_file(attrs: Keys, cloud: str) -> str:
    """`cloudEnvFileName`: the node's Azure environment file for `cloudName: AzureStackCloud`
    (as provider-azure takes it). Read per volume; an absolute, normalised path."""
    key = attrs.name("cloudenvfilename")
    path = attrs.get("cloudenvfilename")
    stack = cloud.lower() == AZURE_STACK_CLOUD.lower()
    if not path:
        if stack:
            raise InvalidArgument(
                f"cloudName {AZURE_STACK_CLOUD} needs cloudEnvFileName: the path of the cloud's"
                " environment file (JSON) on the node"
            )
        return ""
    if not stack:
        raise InvalidArgument(
            f"{key} applies only to cloudName {AZURE_STACK_CLOUD}; set cloudName, or remove {key}"
        )
    if (
        not path.startswith("/")
        or posixpath.normpath(path) != path
        or any(ord(c) < 32 or ord(c) == 127 for c in path)
        or len(path) > 4000
    ):
        raise InvalidArgument(
            f"{key} {quote(path)} must be an absolute, normalised path on the node"
        )
    return path


def file_content(attrs: Keys, source: str) -> FileContent:
    """`fileformat`: FlexVolume volumes get the azure/kv driver's bytes unless they ask for ours,
    so pod specs and init containers written for it keep working; CSI volumes get ours."""
    text = attrs.get("fileformat").lower()
    if not text:
        return FileContent.UPSTREAM if source == "flexvolume" else FileContent.PEM
    try:
        return FileContent(text)
    except ValueError:
        raise InvalidArgument(
            f'{attrs.name("fileformat")} must be "pem" or "upstream", got {attrs.shown("fileformat")}'
        ) from None


_GID = re.compile(r"[0-9]{1,10}")
_FS_GROUP_KEYS = (FLEX + "mounterargs.fsgroup", FLEX + "fsgroup")


def fs_group(attrs: Keys, csi_group: str) -> int:
    """The pod's fsGroup (-1 when none): CSI's volume_mount_group or FlexVolume's mounter arg."""
    given = [("volume_capability.mount.volume_mount_group", csi_group.strip())]
    given += [(attrs.name(k), attrs.get(k)) for k in _FS_GROUP_KEYS]
    for where, text in given:
        if not text:
            continue
        if not _GID.fullmatch(text) or int(text) > 0xFFFFFFFE:
            raise InvalidArgument(f"{where} {quote(text)} is not a group id (0 to 4294967294)")
        return int(text)
    return -1


def nmi_port(attrs: Keys) -> int:
    text = attrs.get("nmiport")
    if not text:
        return DEFAULT_NMI_PORT
    if not DIGITS.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise InvalidArgument(
            f"{attrs.name('nmiport')} must be an integer between 1 and 65535, got {quote(text)}"
        )
    return int(text)


def pod_info(attrs: Keys) -> PodInfo:
    fields: dict[str, str] = {}
    for field, suffix in (
        ("name", "pod.name"),
        ("namespace", "pod.namespace"),
        ("uid", "pod.uid"),
        ("service_account", "serviceaccount.name"),
    ):
        flex, csi = attrs.get(FLEX + suffix), attrs.get(CSI + suffix)
        if flex and csi and flex != csi:
            raise InvalidArgument(
                f"{attrs.name(FLEX + suffix)} and {attrs.name(CSI + suffix)} disagree"
            )
        value = csi or flex
        pattern = _UID if field == "uid" else _K8S_NAME
        if value and not pattern.fullmatch(value):
            key = attrs.name(CSI + suffix if csi else FLEX + suffix)
            what = "uid" if field == "uid" else "Kubernetes name"
            raise InvalidArgument(f"{key} {quote(value)} is not a valid {what}")
        fields[field] = value
    return PodInfo(**fields)
