"""The secrets-store provider front door's use-case: one `Mount` -> the files and object versions.

The upstream secrets-store CSI driver mounts the tmpfs and writes the files itself; a provider
only answers `Mount` with bytes. So this is the resolve step and nothing else: the request's
`attributes` (a SecretProviderClass's parameters overlaid with the pod's keys) go through the same
parser, credentials, Key Vault clients and renderers as a CSI or FlexVolume publish, and no disk is
touched. Nothing here knows gRPC: `server.py` unpacks the wire messages and packs the answer.

What comes back is what provider-azure returns for the same objects (ids `<type>/<name>`, or
`<type>/<name>/<i>` for version history; modes from `filePermission`, else the request's default
permission), except where provider-azure has a documented bug (README, "The secrets-store provider
front door"). Two of its conventions that our CSI volumes do differently are adopted here:
`objectVersionHistory: 1` is one plain file, and the request's `permission` is the default mode.

De-duplication: the secrets-store driver calls `Mount` for every pod, and again on every rotation
republish. Mounts that ask for the same objects as the same identity (the credential cache's key:
a pod for pod identity, a namespace's service account for workload identity, a client id and
secret for a service principal) share one fetch while it is in flight, and its answer for
`fresh_for` seconds after. Failures are never reused. Identities that only this front door used
are released (credential and Key Vault clients) once idle for `idle_release` seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from azcommon.errors import InvalidArgument, KvError
from driver.contract import PublishRequest
from driver.keyvault.objects import RenderedFile
from driver.metrics import Metrics
from driver.model import DEFAULT_FILE_MODE, AuthMaterial, ObjectSpec, VolumeSpec
from driver.resolve import Prepared, ResolvedVolume, Resolver

log = logging.getLogger(__name__)

SOURCE = "provider"
POD_UID = "csi.storage.k8s.io/pod.uid"


@dataclass(frozen=True)
class MountInput:
    """A `MountRequest`, decoded (see `decode`)."""

    attributes: Mapping[str, str] = field(repr=False)  # may hold service-account tokens
    secrets: Mapping[str, str] = field(repr=False)  # nodePublishSecretRef data
    target_path: str = ""
    permission: int | None = None  # the driver's default file mode; None when not sent


@dataclass(frozen=True)
class ObjectVersion:
    id: str
    version: str


@dataclass(frozen=True)
class MountOutput:
    """The answer: every file with its mode and bytes, and the version of every object."""

    files: tuple[RenderedFile, ...]
    object_versions: tuple[ObjectVersion, ...]
    shared: bool  # served from a fetch made for another Mount


def decode(attributes: str, secrets: str, target_path: str, permission: str) -> MountInput:
    """The request's JSON strings as the driver marshals them (Go `encoding/json`)."""
    return MountInput(
        attributes=_string_map(attributes, "attributes"),
        secrets=_string_map(secrets, "secrets"),
        target_path=target_path,
        permission=_permission(permission),
    )


def _string_map(text: str, what: str) -> dict[str, str]:
    if text.strip() in ("", "null"):  # Go marshals a nil map as null
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        # The text may hold tokens or secrets: describe it, never quote it.
        raise InvalidArgument(f"{what} is not valid JSON ({len(text)} bytes)") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(f"{what} must be a JSON object of strings")
    return value


def _permission(text: str) -> int | None:
    """`permission` is Go's os.FileMode marshalled as JSON: a decimal number ("420" is 0644)."""
    if not text.strip():
        return None
    try:
        mode = int(text.strip())
    except ValueError:
        raise InvalidArgument(
            f"permission {text.strip()[:20]!r} is not a decimal file mode (e.g. 420 for 0644)"
        ) from None
    if mode < 0:
        raise InvalidArgument(f"permission {mode} is negative")
    return mode & 0o777  # type and setuid bits of an os.FileMode are no file permission


def provider_azure_spec(spec: VolumeSpec, permission: int | None) -> VolumeSpec:
    """The volume as provider-azure reads the same parameters.

    - `objectVersionHistory` of 1 is a single plain file there (history is a directory only
      from 2 up), where our CSI volumes write `<path>/0`;
    - an object without `filePermission` takes the request's default permission. (The parsed
      spec no longer tells an explicit "0644" from none; the driver always sends 0644, so the
      two only differ for a driver that sends something else.)
    """

    def adapt(obj: ObjectSpec) -> ObjectSpec:
        changes: dict[str, int] = {}
        if obj.version_history == 1:
            changes["version_history"] = 0
        if permission is not None and obj.mode == DEFAULT_FILE_MODE:
            changes["mode"] = permission
        return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[arg-type]

    return dataclasses.replace(spec, objects=tuple(adapt(o) for o in spec.objects))


def object_versions(spec: VolumeSpec, resolved: ResolvedVolume) -> tuple[ObjectVersion, ...]:
    """provider-azure's ids: `<type>/<name>`, or `<type>/<name>/<i>` (0 = newest) per version
    of a history; an object read from a vault other than the volume's is `<vault>/<type>/<name>`
    so ids stay unique. An entry that produced no file (an optional object that is missing, a
    selection that matched nothing) still names itself, with no version: the secrets-store driver
    refuses an answer without any object version."""
    # The concrete objects behind the files, when the resolver says (selections expanded).
    concrete = tuple(getattr(resolved, "present", ())) or spec.objects
    by_path = {obj.path: obj for obj in concrete}
    out: list[ObjectVersion] = []
    for path, versions in resolved.versions.items():
        obj = by_path.get(path)
        if obj is None:
            out += [ObjectVersion(path, v) for v in versions[:1]]
        elif obj.version_history > 0:
            out += [ObjectVersion(f"{_id(spec, obj)}/{i}", v) for i, v in enumerate(versions)]
        elif versions:
            out.append(ObjectVersion(_id(spec, obj), versions[0]))
    for obj in spec.objects:
        if not getattr(obj, "selects", False) and obj.path not in resolved.versions:
            out.append(ObjectVersion(_id(spec, obj), ""))
    if not out:
        out = [ObjectVersion(_id(spec, obj), "") for obj in spec.objects]
    return tuple(out)


def _id(spec: VolumeSpec, obj: ObjectSpec) -> str:
    plain = f"{obj.type.value}/{obj.name}"
    return f"{obj.vault}/{plain}" if obj.vault and obj.vault != spec.vault_name else plain


@dataclass
class _Answer:
    future: Future[ResolvedVolume]
    done_at: float = 0.0  # monotonic; 0 while in flight


@dataclass
class _Identity:
    spec: VolumeSpec
    auth: AuthMaterial = field(repr=False)
    last_used: float


class ProviderMounts:
    """Answers `Mount` for the secrets-store driver through the shared resolver."""

    def __init__(
        self,
        resolver: Resolver,
        metrics: Metrics,
        *,
        fresh_for: float,
        in_use: Callable[[str], bool],
        idle_release: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._metrics = metrics
        self._fresh_for = fresh_for
        self._in_use = in_use  # identity key -> a published volume still needs it
        self._idle_release = idle_release
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], _Answer] = {}
        self._identities: dict[str, _Identity] = {}
        self.fetches = 0  # Mounts that asked Key Vault
        self.shared = 0  # Mounts served by another Mount's fetch

    def mount(self, request: MountInput) -> MountOutput:
        with self._measure():
            publish = PublishRequest(
                volume_id=_volume_id(request),
                target_path=Path(request.target_path or "/"),
                attributes=request.attributes,
                secrets=request.secrets,
                source=SOURCE,
            )
            prepared = self._resolver.prepare(publish)
            spec = provider_azure_spec(prepared.spec, request.permission)
            prepared = dataclasses.replace(prepared, spec=spec)
            identity = prepared.access.identity_key
            self._touch(identity, spec, prepared.auth)
            resolved, shared = self._once((repr(_without_pod(spec)), identity), prepared)
            files = resolved.files
            log.info(
                "provider mount %s: %d files from vault %s%s",
                publish.volume_id,
                len(files),
                spec.vault_name,
                " (shared answer)" if shared else "",
            )
            return MountOutput(files, object_versions(spec, resolved), shared)

    # -- de-duplication -------------------------------------------------------------------------

    def _once(self, key: tuple[str, str], prepared: Prepared) -> tuple[ResolvedVolume, bool]:
        """One fetch per key in flight, its answer reused for `fresh_for` seconds."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            answer = self._answers.get(key)
            mine = answer is None
            if answer is None:
                answer = _Answer(Future())
                self._answers[key] = answer
        if not mine:
            resolved = answer.future.result()  # raises the owner's error too
            with self._lock:
                self.shared += 1
            self._metrics.provider_shared.inc()
            return resolved, True
        try:
            resolved = self._resolver.fetch(prepared)
        except BaseException as exc:
            with self._lock:
                self._answers.pop(key, None)  # never reuse a failure
                self.fetches += 1
            answer.future.set_exception(exc)
            raise
        with self._lock:
            self.fetches += 1
            answer.done_at = self._clock()
            if self._fresh_for <= 0:
                self._answers.pop(key, None)
        answer.future.set_result(resolved)
        return resolved, False

    def _expire(self, now: float) -> None:
        stale = [
            k for k, a in self._answers.items() if a.done_at and now - a.done_at >= self._fresh_for
        ]
        for k in stale:
            del self._answers[k]

    # -- identities only this front door used ---------------------------------------------------

    def _touch(self, identity: str, spec: VolumeSpec, auth: AuthMaterial) -> None:
        now = self._clock()
        with self._lock:
            self._identities[identity] = _Identity(spec, auth, now)
            idle = [
                (k, e)
                for k, e in self._identities.items()
                if k != identity and now - e.last_used > self._idle_release
            ]
            for k, _ in idle:
                del self._identities[k]
        for key, entry in idle:
            if not self._in_use(key):
                self._resolver.release(entry.spec, entry.auth, key)

    @contextmanager
    def _measure(self) -> Iterator[None]:
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
            self._metrics.operations.labels("mount", SOURCE, result).inc()
            self._metrics.operation_seconds.labels("mount", SOURCE, result).observe(
                time.perf_counter() - t0
            )


def _without_pod(spec: VolumeSpec) -> VolumeSpec:
    # The identity key already says whose the answer is; the pod's own name must not split it.
    return dataclasses.replace(spec, pod=dataclasses.replace(spec.pod, name="", uid=""))


def _volume_id(request: MountInput) -> str:
    """A name for the log lines: the pod uid and a digest of the target path."""
    uid = request.attributes.get(POD_UID, "") or "no-pod-uid"
    digest = hashlib.sha256(request.target_path.encode("utf-8", "replace")).hexdigest()[:12]
    return f"provider-{uid[:36]}-{digest}"
