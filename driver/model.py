"""The parsed form of a volume request, shared by every part of the engine.

`VolumeSpec` is what gets persisted in the state store, so it holds no secret material: client
secrets and service-account tokens travel separately in `AuthMaterial`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ObjectType(StrEnum):
    SECRET = "secret"
    KEY = "key"
    CERT = "cert"


class ObjectFormat(StrEnum):
    """How a certificate-backed secret is written (secrets only)."""

    DEFAULT = ""  # not given: PEM
    PEM = "pem"
    PFX = "pfx"


class ObjectEncoding(StrEnum):
    """How a secret's stored text becomes the file's bytes (secrets only)."""

    UTF8 = "utf-8"
    BASE64 = "base64"
    HEX = "hex"


class FileContent(StrEnum):
    """Which bytes the objects become (volume option `fileformat`)."""

    PEM = "pem"  # ours: PEM keys, certificates and key + chain bundles (CSI's default)
    # What the azure/kv FlexVolume driver wrote (FlexVolume's default): a secret exactly as
    # stored, a certificate as DER, an RSA key as its base64url modulus.
    UPSTREAM = "upstream"


class IdentityMode(StrEnum):
    POD_IDENTITY = "pod-identity"
    SERVICE_PRINCIPAL = "service-principal"
    VM_MANAGED_IDENTITY = "vm-managed-identity"
    WORKLOAD_IDENTITY = "workload-identity"


DEFAULT_FILE_MODE = 0o644
DEFAULT_NMI_PORT = 2579


@dataclass(frozen=True)
class ObjectSpec:
    """One Key Vault object and how it lands on disk."""

    name: str
    type: ObjectType
    version: str = ""  # "" means latest: such objects are polled for rotation
    alias: str = ""  # relative file path; "" means the object name
    format: ObjectFormat = ObjectFormat.DEFAULT  # secrets only
    encoding: ObjectEncoding = ObjectEncoding.UTF8  # secrets only
    mode: int = DEFAULT_FILE_MODE
    version_history: int = 0  # >0: write the N newest enabled versions under <alias>/0..N-1
    vault: str = ""  # vault name; one per volume today, kept per object for multi-vault later
    content: FileContent = FileContent.PEM  # the volume's `fileformat`, on each of its objects

    @property
    def path(self) -> str:
        return self.alias or self.name

    @property
    def pinned(self) -> bool:
        return bool(self.version)


@dataclass(frozen=True)
class PodInfo:
    name: str = ""
    namespace: str = ""
    uid: str = ""
    service_account: str = ""


@dataclass(frozen=True)
class IdentitySpec:
    """Which identity the volume authenticates as. No secrets here."""

    mode: IdentityMode
    client_id: str = ""  # SP client id, user-assigned MI client id, or workload identity client id
    nmi_port: int = DEFAULT_NMI_PORT


@dataclass(frozen=True)
class VolumeSpec:
    vault_name: str
    tenant_id: str
    identity: IdentitySpec
    objects: tuple[ObjectSpec, ...]
    pod: PodInfo = field(default_factory=PodInfo)
    cloud_name: str = ""  # "" means the daemon's configured cloud
    fs_group: int | None = None  # the pod's fsGroup: the group that owns the files

    def file_paths(self) -> list[str]:
        """Every file the volume will hold, known before anything is fetched."""
        paths: list[str] = []
        for obj in self.objects:
            if obj.version_history:
                paths += [f"{obj.path}/{i}" for i in range(obj.version_history)]
            else:
                paths.append(obj.path)
        return paths


@dataclass(frozen=True)
class AuthMaterial:
    """Secret inputs to authentication: kept in memory only, never persisted or logged."""

    client_secret: str = field(default="", repr=False)
    # The service-account token for audience api://AzureADTokenExchange (workload identity).
    sa_token: str = field(default="", repr=False)
    sa_token_expiry: float = 0.0  # epoch seconds, 0 when unknown

    def __bool__(self) -> bool:
        return bool(self.client_secret or self.sa_token)


@dataclass(frozen=True)
class ParsedVolume:
    spec: VolumeSpec
    auth: AuthMaterial
    # Non-fatal remarks for the log, e.g. unknown attribute keys (never values).
    warnings: tuple[str, ...] = ()
