"""The parsed form of a volume request, shared by every part of the engine.

`VolumeSpec` is what gets persisted in the state store, so it holds no secret material: client
secrets and service-account tokens travel separately in `AuthMaterial`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
DEFAULT_MAX_MATCHES = 100  # files one selecting entry may produce unless it says otherwise


class CertPartName(StrEnum):
    """The files a certificate-backed secret can be split into (`<path>.<part>`)."""

    KEY = "key"  # the private key, PKCS#8 PEM
    CRT = "crt"  # the leaf certificate, PEM
    CHAIN = "chain"  # the intermediates then the root, PEM (empty for a self-signed leaf)
    BUNDLE = "bundle"  # key, leaf, chain: what the unsplit object writes


@dataclass(frozen=True)
class CertPart:
    """One file of a split certificate and its mode."""

    part: CertPartName
    mode: int = DEFAULT_FILE_MODE


@dataclass(frozen=True)
class Selector:
    """Which objects an entry selects from a vault listing, instead of naming one.

    `pattern` is a glob on the object name (`app-*`; a prefix is `prefix*`); `tags` are
    `key=value` pairs every selected object must carry. At least one of them is set.
    """

    pattern: str = ""
    tags: tuple[str, ...] = ()
    max_matches: int = DEFAULT_MAX_MATCHES

    @property
    def signature(self) -> str:
        """What identifies the listing's result (the bound is applied per entry afterwards)."""
        return self.pattern + "\x00" + "\x00".join(sorted(self.tags))


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
    vault: str = ""  # the vault this object is read from ("" in old records: the volume's)
    optional: bool = False  # missing (404) or disabled: skipped, not an error
    select: Selector | None = None  # set: this entry stands for every object the selector finds
    cert_parts: tuple[CertPart, ...] = ()  # set: a certificate-backed secret split into files
    content: FileContent = FileContent.PEM  # the volume's `fileformat`, on each of its objects

    @property
    def path(self) -> str:
        return self.alias or self.name

    @property
    def pinned(self) -> bool:
        return bool(self.version)

    @property
    def selects(self) -> bool:
        return self.select is not None

    def vault_or(self, default: str) -> str:
        return self.vault or default

    def selected(self, name: str) -> ObjectSpec:
        """The concrete object a selecting entry yields for one listed name: written under the
        entry's alias (a directory) or, without one, under its own name. Optional: deleted
        between the listing and the read, it is simply not there."""
        alias = f"{self.alias}/{name}" if self.alias else ""
        return replace(self, name=name, alias=alias, select=None, optional=True)


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
    # AzureStackCloud (and other custom clouds): the node's environment file, read per volume.
    cloud_env_file: str = ""
    fs_group: int | None = None  # the pod's fsGroup: the group that owns the files

    def file_paths(self) -> list[str]:
        """The files the volume holds for certain, known before anything is fetched: a lower
        bound (optional objects and selections may write none, so they do not count)."""
        paths: list[str] = []
        for obj in self.objects:
            if obj.optional or obj.select is not None:
                continue
            bases = (
                [f"{obj.path}/{i}" for i in range(obj.version_history)]
                if obj.version_history
                else [obj.path]
            )
            suffixes = [f".{p.part.value}" for p in obj.cert_parts] or [""]
            paths += [base + suffix for base in bases for suffix in suffixes]
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
