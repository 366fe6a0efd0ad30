"""The resolve seam: from a volume request to the bytes of its files, with no disk I/O.

    request -> parse (VolumeSpec + secret inputs; every error before any network call)
            -> access (cloud, one shared credential per identity, each object's vault URL)
            -> list the vaults for selecting entries (`app-*`, tags) -> concrete objects
            -> fetch every object concurrently, across vaults (a missing optional one: none)
            -> render each present object to (path, mode, bytes)

Publish writes what this returns; rotation asks it for the latest versions and renders what
changed; a front door that hands bytes back instead of writing files calls `resolve`. The
resolver owns no state of its own beyond the credential and client caches it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from azure.core.credentials import TokenCredential

from azcommon.cloud import Cloud, Clouds
from azcommon.errors import FailedPrecondition
from driver.contract import PublishRequest
from driver.keyvault.fetch import KeyVaultFetcher, VaultRef
from driver.keyvault.objects import Fetched, RenderedFile
from driver.keyvault.render import render
from driver.keyvault.types.selection import expand
from driver.model import AuthMaterial, ObjectSpec, VolumeSpec
from driver.spec import parse_volume
from driver.volumes import VolumeRecord

log = logging.getLogger(__name__)


class CredentialSource(Protocol):
    """Credentials per identity (see `driver.auth.provider.CredentialProvider`)."""

    def credential_for(
        self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud
    ) -> TokenCredential: ...

    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial) -> str: ...

    def forget(self, spec: VolumeSpec, auth: AuthMaterial) -> None: ...

    def needs_stored_auth(self, spec: VolumeSpec) -> bool: ...

    def proves_per_volume(self, spec: VolumeSpec) -> bool: ...

    def principal(
        self, spec: VolumeSpec, identity_key: str, credential: TokenCredential
    ) -> str: ...


@dataclass(frozen=True)
class Access:
    """How to reach a volume's vaults as its identity: one credential for every vault (per
    identity and tenant), each vault's URL from the volume's cloud."""

    vault: VaultRef  # the volume's own vault (`keyvaultName`)
    credential: TokenCredential
    identity_key: str
    cloud: Cloud

    def vault_of(self, obj: ObjectSpec) -> VaultRef:
        """The vault an object is read from: its own `keyvaultName`, else the volume's."""
        if not obj.vault or obj.vault == self.vault.name:
            return self.vault
        return VaultRef(obj.vault, self.cloud.vault_url(obj.vault))


@dataclass(frozen=True)
class Prepared:
    """A parsed request and the access it needs; nothing fetched yet."""

    spec: VolumeSpec
    auth: AuthMaterial
    access: Access


@dataclass(frozen=True)
class ResolvedVolume:
    """Everything a volume's files are, ready to be written or returned."""

    spec: VolumeSpec
    identity_key: str
    files: tuple[RenderedFile, ...]
    versions: dict[str, list[str]]  # object path -> versions (one, or the history newest first)
    # The concrete objects whose files these are: selecting entries expanded, missing optional
    # objects left out.
    present: tuple[ObjectSpec, ...] = ()


class Resolver:
    """Parse, authenticate, fetch and render: the part of a publish that touches no disk."""

    def __init__(
        self, clouds: Clouds, credentials: CredentialSource, fetcher: KeyVaultFetcher
    ) -> None:
        self._clouds = clouds
        self._credentials = credentials
        self._fetcher = fetcher

    def resolve(self, request: PublishRequest) -> ResolvedVolume:
        return self.fetch(self.prepare(request))

    def prepare(self, request: PublishRequest) -> Prepared:
        parsed = parse_volume(request.attributes, request.secrets, request.source, request.fs_group)
        for warning in parsed.warnings:
            log.warning("volume %s: %s", request.volume_id, warning)
        spec = parsed.spec
        return Prepared(spec, parsed.auth, self._access(spec, parsed.auth))

    def fetch(self, prepared: Prepared) -> ResolvedVolume:
        spec, access = prepared.spec, prepared.access
        selecting = [obj for obj in spec.objects if obj.selects]
        names = self._fetcher.list_all(
            [(access.vault_of(obj), obj) for obj in selecting],
            access.credential,
            access.identity_key,
        )
        concrete = expand_all(spec.objects, dict(zip(selecting, names, strict=True)))
        fetched = self._fetcher.fetch_all(
            [(access.vault_of(obj), obj) for obj in concrete],
            access.credential,
            access.identity_key,
        )
        return self.assemble(spec, access.identity_key, concrete, fetched)

    @staticmethod
    def assemble(
        spec: VolumeSpec,
        identity_key: str,
        concrete: Sequence[ObjectSpec],
        fetched: Sequence[Sequence[Fetched]],
    ) -> ResolvedVolume:
        present = [(obj, vs) for obj, vs in zip(concrete, fetched, strict=True) if vs]
        files = tuple(f for obj, versions in present for f in render(obj, versions))
        check_unique(files, [obj for obj, _ in present])
        return ResolvedVolume(
            spec,
            identity_key,
            files,
            {obj.path: [v.version for v in vs] for obj, vs in present},
            tuple(obj for obj, _ in present),
        )

    # -- for recorded volumes (rotation, recovery) ----------------------------------------------

    def access_recorded(self, record: VolumeRecord, auth: AuthMaterial) -> tuple[Access, str]:
        """Access for a recorded volume, and the Azure principal Key Vault will see."""
        spec = record.spec
        if not auth and self._credentials.needs_stored_auth(spec):
            raise FailedPrecondition(
                f"volume {record.volume_id}: its {spec.identity.mode.value} credentials are not"
                " in memory (daemon restarted); waiting for kubelet to republish"
            )
        access = self._access(spec, auth, record.identity_key)
        if self._credentials.proves_per_volume(spec):
            # Checks are shared by every volume of one Azure identity; each volume still proves
            # with its own (cached) token that the identity is still its own, so a pod whose
            # binding or federation was removed stops receiving new versions.
            access.credential.get_token(access.cloud.scope)
        principal = self._credentials.principal(spec, record.identity_key, access.credential)
        return access, principal

    def refetch(self, record: VolumeRecord, auth: AuthMaterial) -> ResolvedVolume:
        """Everything of a recorded volume again (its files were lost)."""
        access, _ = self.access_recorded(record, auth)
        return self.fetch(Prepared(record.spec, auth, access))

    def latest(self, access: Access, obj: ObjectSpec) -> list[Fetched]:
        """The current version(s) of one object (`[]`: optional and missing): what a rotation
        check asks."""
        return self._fetcher.fetch(
            access.vault_of(obj), obj, access.credential, access.identity_key
        )

    def listing(self, access: Access, entry: ObjectSpec) -> list[str]:
        """The names a selecting entry selects now: what a rotation listing asks."""
        return self._fetcher.select(
            access.vault_of(entry), entry, access.credential, access.identity_key
        )

    def release(self, spec: VolumeSpec, auth: AuthMaterial, identity_key: str) -> None:
        """Free the credential and Key Vault clients of an identity no volume uses any more."""
        self._credentials.forget(spec, auth)
        self._fetcher.forget(identity_key)

    def _access(self, spec: VolumeSpec, auth: AuthMaterial, identity_key: str = "") -> Access:
        cloud = self._clouds.resolve(spec.cloud_name, spec.cloud_env_file)
        credential = self._credentials.credential_for(spec, auth, cloud)
        key = identity_key or self._credentials.identity_key(spec, auth)
        vault = VaultRef(spec.vault_name, cloud.vault_url(spec.vault_name))
        return Access(vault, credential, key, cloud)


def expand_all(
    objects: Sequence[ObjectSpec], selected: Mapping[ObjectSpec, Sequence[str]]
) -> list[ObjectSpec]:
    """Every entry as the concrete objects it stands for, in entry order."""
    return [o for entry in objects for o in expand(entry, selected.get(entry, ()))]


def check_unique(files: Sequence[RenderedFile], objects: Sequence[ObjectSpec]) -> None:
    """Selected objects land where listings put them: refuse two on one file."""
    seen: set[str] = set()
    for f in files:
        if f.path in seen:
            names = ", ".join(repr(o.name) for o in objects)
            raise FailedPrecondition(
                f"two objects would write the file {f.path!r} (objects {names}); give the"
                " selecting entry an objectAlias (a directory) or narrow its pattern"
            )
        seen.add(f.path)
