"""The publish/unpublish use-cases that both front doors (CSI and FlexVolume) call.

publish: parse and validate everything first (no side effect on bad input), fetch every object
concurrently, render, and only then mount and swap the files in; record the volume (no secrets).
A failure leaves no mount and no files behind on a first publish, and the old files on a
republish. The engine knows nothing of gRPC or FlexVolume.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from azure.core.credentials import TokenCredential

from driver.cloud import Cloud, Clouds
from driver.engine_api import PublishRequest
from driver.errors import Aborted, FailedPrecondition, Internal, InvalidArgument, KvError
from driver.files import DATA_LINK, AtomicWriter, current_payload
from driver.keyvault.fetch import KeyVaultFetcher, VaultRef
from driver.keyvault.objects import Fetched, RenderedFile
from driver.keyvault.render import render
from driver.metrics import Metrics
from driver.model import AuthMaterial, IdentityMode, ObjectSpec, VolumeSpec
from driver.mounts import Mounter
from driver.spec import parse_volume
from driver.volumes import AuthStore, VolumeRecord, VolumeStore

log = logging.getLogger(__name__)


NEEDS_AUTH = frozenset({IdentityMode.SERVICE_PRINCIPAL, IdentityMode.WORKLOAD_IDENTITY})
SHARED_PRINCIPAL = frozenset({IdentityMode.POD_IDENTITY, IdentityMode.WORKLOAD_IDENTITY})


class CredentialSource(Protocol):
    def credential_for(
        self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud
    ) -> TokenCredential: ...

    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial) -> str: ...

    def forget(self, spec: VolumeSpec, auth: AuthMaterial) -> None: ...


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    mode: int


@dataclass(frozen=True)
class PublishResult:
    volume_id: str
    target_path: Path
    files: tuple[FileInfo, ...]
    versions: dict[str, list[str]]
    fetched: bool  # False when a republish was served without asking Key Vault


class Engine:
    def __init__(
        self,
        *,
        clouds: Clouds,
        credentials: CredentialSource,
        fetcher: KeyVaultFetcher,
        mounter: Mounter,
        writer: AtomicWriter,
        store: VolumeStore,
        auth_store: AuthStore,
        metrics: Metrics,
        poll_interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clouds = clouds
        self.credentials = credentials
        self.fetcher = fetcher
        self.mounter = mounter
        self.writer = writer
        self.store = store
        self.auth_store = auth_store
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.clock = clock
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        # Secret inputs needed to rotate without the caller: memory (and the tmpfs-only AuthStore).
        self._auth: dict[str, AuthMaterial] = {}

    # -- front-door use-cases -------------------------------------------------------------------

    def publish(self, request: PublishRequest) -> PublishResult:
        with self._measure("publish", request.source), self.exclusive(request.volume_id):
            return self._publish(request)

    def unpublish(self, volume_id: str, target_path: Path) -> None:
        record = self.store.get(volume_id) or self.store.find_by_target(str(target_path))
        source = record.source if record else "unknown"
        with self._measure("unpublish", source), self.exclusive(volume_id):
            self.mounter.release(target_path)
            if record is not None:
                self._drop(record)
                log.info("unpublished volume %s at %s", record.volume_id, target_path)
            self._auth.pop(volume_id, None)
            self.auth_store.delete(volume_id)

    def ready(self) -> bool:
        return self.store.dir.is_dir()

    # -- shared by rotation ---------------------------------------------------------------------

    @contextmanager
    def exclusive(self, volume_id: str) -> Iterator[None]:
        """One operation per volume at a time; a concurrent one is refused (ABORTED, retried)."""
        with self._busy_lock:
            if volume_id in self._busy:
                raise Aborted(f"volume {volume_id}: another operation is in progress")
            self._busy.add(volume_id)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy.discard(volume_id)

    def access(self, record: VolumeRecord) -> tuple[VaultRef, TokenCredential, str]:
        """The vault, a credential and the Azure principal to act for a recorded volume."""
        spec = record.spec
        cloud = self.clouds.resolve(spec.cloud_name)
        auth = self._auth.get(record.volume_id, AuthMaterial())
        if not auth and spec.identity.mode in NEEDS_AUTH:
            raise FailedPrecondition(
                f"volume {record.volume_id}: its {spec.identity.mode.value} credentials are not"
                " in memory (daemon restarted); waiting for kubelet to republish"
            )
        credential = self.credentials.credential_for(spec, auth, cloud)
        if spec.identity.mode in SHARED_PRINCIPAL:
            # Checks are shared by every volume of one Azure identity; each volume still proves
            # with its own (cached) token that the identity is still its own, so a pod whose
            # binding or federation was removed stops receiving new versions.
            credential.get_token(cloud.scope)
        vault = VaultRef(spec.vault_name, cloud.vault_url(spec.vault_name))
        return vault, credential, principal_of(record, credential)

    def intact(self, record: VolumeRecord) -> bool:
        target = Path(record.target_path)
        return self.mounter.is_mounted(target) and (target / DATA_LINK).is_dir()

    def apply_rotation(self, record: VolumeRecord, changed: dict[str, list[Fetched]]) -> bool:
        """Swap in new versions of `changed` objects, keeping every other file as it is."""
        with self.exclusive(record.volume_id):
            self._still_current(record)
            target = Path(record.target_path)
            try:
                files, versions = carry_over(record, changed, target)
            except OSError as exc:
                raise Internal(f"reading the current files under {target}: {exc}") from None
            swapped = self.writer.write(target, files)
            for path in changed:
                log.info(
                    "rotated volume %s object %s: %s -> %s",
                    record.volume_id,
                    path,
                    ",".join(record.versions.get(path, [])) or "-",
                    ",".join(versions[path]),
                )
            record.versions = versions
            record.last_check = self.clock()
            self.store.save(record)
            if swapped:
                self.metrics.rotations.inc()
            return swapped

    def recover(self, record: VolumeRecord) -> None:
        """Re-mount and rewrite a recorded volume from Key Vault (its files were lost)."""
        with self.exclusive(record.volume_id):
            self._still_current(record)
            vault, credential, _ = self.access(record)
            fetched = self.fetcher.fetch_all(
                vault, record.spec.objects, credential, record.identity_key
            )
            record.versions = versions_of(record.spec.objects, fetched)
            record.last_check = self.clock()
            self._mount_write_save(Path(record.target_path), record, fetched)
            log.info("recovered volume %s at %s", record.volume_id, record.target_path)

    def _still_current(self, record: VolumeRecord) -> None:
        """Rotation works on the records it read at the start of a cycle; refuse to act on one
        that a publish or unpublish has replaced or removed since."""
        if self.store.get(record.volume_id) is not record:
            raise Aborted(f"volume {record.volume_id} changed during the rotation check")

    def touch(self, record: VolumeRecord, now: float) -> None:
        record.last_check = now  # memory only: a restart just checks once more

    def forget(self, record: VolumeRecord, reason: str = "its target no longer exists") -> None:
        """Stop managing a volume (its files, if any, stay where they are)."""
        self._drop(record)
        log.info("forgot volume %s at %s: %s", record.volume_id, record.target_path, reason)

    def restore(self) -> list[str]:
        """Reload state after a (re)start; rebuild lost volumes. Returns the problems seen."""
        problems = self.store.open()
        self._auth = self.auth_store.open()
        for record in self.store.all():
            target = Path(record.target_path)
            if not target.exists():
                self.forget(record)
            elif not self.intact(record):
                try:
                    self.recover(record)
                except KvError as exc:
                    problems.append(f"volume {record.volume_id}: not recovered yet: {exc}")
            else:
                self.writer.sweep(target)  # a payload left by a crash mid-swap
        self._update_gauge()
        return problems

    def _drop(self, record: VolumeRecord) -> None:
        self.store.delete(record.volume_id)
        auth = self._auth.pop(record.volume_id, AuthMaterial())
        self.auth_store.delete(record.volume_id)
        if not self._identity_in_use(record.identity_key):
            # The last volume of this identity: free its credential and Key Vault clients.
            self.credentials.forget(record.spec, auth)
            self.fetcher.forget(record.identity_key)
        self._update_gauge()

    @staticmethod
    def render_all(
        objects: Sequence[ObjectSpec], fetched: Sequence[Sequence[Fetched]]
    ) -> tuple[RenderedFile, ...]:
        return tuple(
            f for obj, versions in zip(objects, fetched, strict=True) for f in render(obj, versions)
        )

    # -- internals ------------------------------------------------------------------------------

    def _publish(self, request: PublishRequest) -> PublishResult:
        parsed = parse_volume(request.attributes, request.secrets)
        for warning in parsed.warnings:
            log.warning("volume %s: %s", request.volume_id, warning)
        spec = parsed.spec
        cloud = self.clouds.resolve(spec.cloud_name)
        vault = VaultRef(spec.vault_name, cloud.vault_url(spec.vault_name))
        target = request.target_path
        credential = self.credentials.credential_for(spec, parsed.auth, cloud)
        identity_key = self.credentials.identity_key(spec, parsed.auth)

        existing = self.store.get(request.volume_id)
        if (
            existing is not None
            and existing.spec == spec
            and existing.target_path == str(target)
            and self.intact(existing)
            and self.clock() - existing.last_check < self.poll_interval
        ):
            # kubelet republishes (requiresRepublish) to hand over fresh tokens: nothing to fetch.
            self._remember_auth(request.volume_id, parsed.auth)
            return self._result(existing, target, fetched=False)

        try:
            fetched = self.fetcher.fetch_all(vault, spec.objects, credential, identity_key)
            now = self.clock()
            record = VolumeRecord(
                volume_id=request.volume_id,
                target_path=str(target),
                source=request.source,
                spec=spec,
                identity_key=identity_key,
                versions=versions_of(spec.objects, fetched),
                published_at=existing.published_at if existing else now,
                last_check=now,
            )
            files = self._mount_write_save(target, record, fetched)
        except BaseException:
            if existing is None and not self._identity_in_use(identity_key):
                # Nothing of this identity is mounted: keep no credential or client for it.
                self.credentials.forget(spec, parsed.auth)
                self.fetcher.forget(identity_key)
            raise
        self._remember_auth(request.volume_id, parsed.auth)
        self._update_gauge()
        log.info(
            "published volume %s at %s: %d objects from vault %s",
            request.volume_id,
            target,
            len(spec.objects),
            spec.vault_name,
        )
        return self._result(record, target, fetched=True, files=files)

    def _remember_auth(self, volume_id: str, auth: AuthMaterial) -> None:
        """Keep what rotation needs to authenticate later (memory; tmpfs-only file)."""
        if auth and self._auth.get(volume_id) != auth:
            self._auth[volume_id] = auth
            self.auth_store.save(volume_id, auth)

    def _check_fits(self, files: Sequence[RenderedFile]) -> None:
        """A swap holds the old and the new payload at once: half the tmpfs is the limit."""
        capacity = self.mounter.capacity
        size = sum(len(f.data) for f in files)
        if capacity is not None and 2 * size > capacity:
            raise InvalidArgument(
                f"the volume's files take {size} bytes; rotation needs twice that on its tmpfs,"
                f" which holds {capacity}: fewer objects or versions, or a larger --tmpfs-size"
            )

    def _identity_in_use(self, identity_key: str) -> bool:
        return any(r.identity_key == identity_key for r in self.store.all())

    def _mount_write_save(
        self, target: Path, record: VolumeRecord, fetched: Sequence[Sequence[Fetched]]
    ) -> tuple[RenderedFile, ...]:
        """Render, then mount, write and record; a failure undoes a mount this call made."""
        files = self.render_all(record.spec.objects, fetched)  # render errors precede the mount
        self._check_fits(files)
        created = self.mounter.prepare(target)
        try:
            self.writer.write(target, files)
            self.store.save(record)
        except BaseException:
            if created:
                self.mounter.release(target)
            raise
        return files

    def _result(
        self,
        record: VolumeRecord,
        target: Path,
        *,
        fetched: bool,
        files: Sequence[RenderedFile] | None = None,
    ) -> PublishResult:
        if files is not None:
            infos = tuple(FileInfo(f.path, len(f.data), f.mode) for f in files)
        else:
            infos = tuple(
                FileInfo(
                    p.relative_to(target / "..data").as_posix(),
                    p.stat().st_size,
                    p.stat().st_mode & 0o7777,
                )
                for p in sorted((target / "..data").rglob("*"))
                if p.is_file()
            )
        return PublishResult(record.volume_id, target, infos, dict(record.versions), fetched)

    def _update_gauge(self) -> None:
        counts: dict[str, int] = {"csi": 0, "flexvolume": 0}
        for record in self.store.all():
            counts[record.source] = counts.get(record.source, 0) + 1
        for source, count in counts.items():
            self.metrics.volumes.labels(source).set(count)

    @contextmanager
    def _measure(self, operation: str, source: str) -> Iterator[None]:
        t0 = time.perf_counter()
        result = "success"
        try:
            yield
        except KvError as exc:
            result = exc.code
            raise
        except BaseException:
            result = "INTERNAL"
            raise
        finally:
            self.metrics.operations.labels(operation, source, result).inc()
            self.metrics.operation_seconds.labels(operation, source, result).observe(
                time.perf_counter() - t0
            )


def versions_of(
    objects: Sequence[ObjectSpec], fetched: Sequence[Sequence[Fetched]]
) -> dict[str, list[str]]:
    return {obj.path: [v.version for v in vs] for obj, vs in zip(objects, fetched, strict=True)}


def carry_over(
    record: VolumeRecord, changed: dict[str, list[Fetched]], target: Path
) -> tuple[list[RenderedFile], dict[str, list[str]]]:
    """The full new payload: changed objects rendered anew, every other file kept as it is."""
    current = current_payload(target)
    files: list[RenderedFile] = []
    versions = dict(record.versions)
    for obj in record.spec.objects:
        if obj.path in changed:
            files.extend(render(obj, changed[obj.path]))
            versions[obj.path] = [v.version for v in changed[obj.path]]
            continue
        prefix = obj.path + "/"
        kept = {p: mv for p, mv in current.items() if p == obj.path or p.startswith(prefix)}
        if not kept:
            raise FailedPrecondition(
                f"volume {record.volume_id}: current files of {obj.path!r} are missing"
            )
        files.extend(RenderedFile(p, mode, data) for p, (mode, data) in kept.items())
    return files, versions


def principal_of(record: VolumeRecord, credential: TokenCredential) -> str:
    """Who Key Vault sees: volumes of the same Azure identity share one rotation check."""
    spec = record.spec
    if spec.identity.mode is IdentityMode.POD_IDENTITY:
        # NMI tells which identity MIC assigned to the pod once a token was issued.
        client_id = getattr(credential, "client_id", "") or ""
        return f"{spec.tenant_id}/{client_id}" if client_id else record.identity_key
    if spec.identity.mode is IdentityMode.WORKLOAD_IDENTITY:
        return f"{spec.tenant_id}/{spec.identity.client_id}"
    return record.identity_key
