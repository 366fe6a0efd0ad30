"""The state store: one JSON record per published volume under `<state-dir>/volumes/`.

Records hold what rotation and restart recovery need (target, parsed spec, pod context, mounted
versions, last check) and never secret values or tokens. Each record is written atomically
(temporary file, fsync, rename), so a crash leaves the old or the new record, never half of one.
A corrupt record is reported and skipped, never fatal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azcommon.errors import InvalidArgument, KvError
from driver.model import (
    DEFAULT_FILE_MODE,
    DEFAULT_MAX_MATCHES,
    AuthMaterial,
    CertPart,
    CertPartName,
    FileContent,
    IdentityMode,
    IdentitySpec,
    ObjectEncoding,
    ObjectFormat,
    ObjectSpec,
    ObjectType,
    PodInfo,
    Selector,
    VolumeSpec,
)
from driver.mounts import mount_points
from driver.spec.record import check_spec
from driver.targets import check_target_path, check_volume_id

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def spec_to_dict(spec: VolumeSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_dict(raw: dict[str, Any]) -> VolumeSpec:
    ident = raw["identity"]
    return VolumeSpec(
        vault_name=str(raw["vault_name"]),
        tenant_id=str(raw["tenant_id"]),
        identity=IdentitySpec(
            mode=IdentityMode(ident["mode"]),
            client_id=str(ident.get("client_id", "")),
            nmi_port=int(ident.get("nmi_port", 2579)),
        ),
        objects=tuple(_object_from_dict(o) for o in raw["objects"]),
        pod=PodInfo(**raw.get("pod", {})),
        cloud_name=str(raw.get("cloud_name", "")),
        cloud_env_file=str(raw.get("cloud_env_file", "")),
        fs_group=raw.get("fs_group"),
    )


def _object_from_dict(raw: dict[str, Any]) -> ObjectSpec:
    select = raw.get("select")
    return ObjectSpec(
        **{
            **raw,
            "type": ObjectType(raw["type"]),
            "format": ObjectFormat(raw.get("format", "")),
            "encoding": ObjectEncoding(raw.get("encoding", "utf-8")),
            "select": None
            if select is None
            else Selector(
                pattern=select.get("pattern", ""),
                tags=tuple(select.get("tags", ())),
                max_matches=select.get("max_matches", DEFAULT_MAX_MATCHES),
            ),
            "cert_parts": tuple(
                CertPart(CertPartName(p["part"]), p.get("mode", DEFAULT_FILE_MODE))
                for p in raw.get("cert_parts", ())
            ),
            "content": FileContent(raw.get("content", "pem")),
        }
    )


@dataclass
class VolumeRecord:
    volume_id: str
    target_path: str
    source: str  # "csi" or "flexvolume"
    spec: VolumeSpec
    identity_key: str
    # object path -> mounted versions (one, or the history newest first)
    versions: dict[str, list[str]] = field(default_factory=dict)
    published_at: float = 0.0
    last_check: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "volume_id": self.volume_id,
            "target_path": self.target_path,
            "source": self.source,
            "spec": spec_to_dict(self.spec),
            "identity_key": self.identity_key,
            "versions": self.versions,
            "published_at": self.published_at,
            "last_check": self.last_check,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> VolumeRecord:
        if raw.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown record format {raw.get('format')!r}")
        return cls(
            volume_id=str(raw["volume_id"]),
            target_path=str(raw["target_path"]),
            source=str(raw["source"]),
            spec=spec_from_dict(raw["spec"]),
            identity_key=str(raw["identity_key"]),
            versions={str(k): [str(v) for v in vs] for k, vs in raw["versions"].items()},
            published_at=float(raw.get("published_at", 0.0)),
            last_check=float(raw.get("last_check", 0.0)),
        )


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class VolumeStore:
    """Volume records keyed by target path: one volume id may be published at several targets,
    and two ids that differ only in characters a file name cannot hold never share a file."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "volumes"
        self._lock = threading.Lock()
        self._records: dict[str, VolumeRecord] = {}

    def open(self) -> list[str]:
        """Load every record from disk; returns the problems found (bad records skipped)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        problems: list[str] = []
        loaded: dict[str, VolumeRecord] = {}
        for path in sorted(self.dir.glob("*.json")):
            try:
                record = self.read(path)
                check(record)
            except Exception as exc:  # any content at all must not stop the daemon
                problem = _problem(exc)
                problems.append(f"{path.name}: {problem}")
                log.warning("skipping volume record %s: %s", path.name, problem)
                continue
            other = loaded.get(record.target_path)
            if other is not None:
                problems.append(
                    f"{path.name}: a second record for target {record.target_path}; kept the"
                    " newer one"
                )
                if other.published_at >= record.published_at:
                    continue
            loaded[record.target_path] = record
            if path != self.path_of(record):
                # Written under an older naming scheme: move it to its own file name.
                self._write(record)
                path.unlink(missing_ok=True)
        with self._lock:
            self._records = loaded
        return problems

    @staticmethod
    def read(path: Path) -> VolumeRecord:
        """One record from disk (raises on anything unreadable or malformed)."""
        raw = json.loads(path.read_bytes())
        if not isinstance(raw, dict):
            raise ValueError(f"a record is a JSON object, not {type(raw).__name__}")
        return VolumeRecord.from_json(raw)

    def path_of(self, record: VolumeRecord) -> Path:
        return self.dir / record_file_name(record.volume_id, record.target_path)

    def save(self, record: VolumeRecord) -> None:
        with self._lock:
            self._write(record)
            self._records[record.target_path] = record

    def _write(self, record: VolumeRecord) -> None:
        data = json.dumps(record.to_json(), indent=1, sort_keys=True).encode()
        write_atomically(self.path_of(record), data)

    def at(self, target: str) -> VolumeRecord | None:
        with self._lock:
            return self._records.get(target)

    def delete(self, record: VolumeRecord) -> None:
        with self._lock:
            if self._records.get(record.target_path) is record:
                del self._records[record.target_path]
            self.path_of(record).unlink(missing_ok=True)

    def all(self) -> list[VolumeRecord]:
        with self._lock:
            return list(self._records.values())

    def __iter__(self) -> Iterator[VolumeRecord]:
        return iter(self.all())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


def record_file_name(volume_id: str, target: str) -> str:
    """Readable (the id's safe characters) and unique (a digest of id and target)."""
    digest = hashlib.sha256(f"{volume_id}\0{target}".encode("utf-8", "replace")).hexdigest()
    return f"{_safe(volume_id)[:80]}-{digest[:16]}.json"


def check(record: VolumeRecord) -> None:
    """A loaded record passes the checks a fresh publish would (records may be edited by hand)."""
    check_volume_id(record.volume_id)
    if str(check_target_path(record.target_path)) != record.target_path:
        raise InvalidArgument(f"target_path {record.target_path!r} is not normalised")
    if record.source not in ("csi", "flexvolume"):
        raise InvalidArgument(f"source {record.source!r} is neither csi nor flexvolume")
    check_spec(record.spec)


def _problem(exc: Exception) -> str:
    if isinstance(exc, KvError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def on_tmpfs(path: Path) -> bool:
    """Whether `path` lives on a tmpfs (memory), judged by its longest mount-point prefix."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    for point, kind in mount_points().items():
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, fstype = point, kind
    return fstype == "tmpfs"


class AuthStore:
    """Rotation credentials (client secrets, service-account tokens) that survive a restart.

    Kept only when the directory is on a tmpfs, in root-only files: never on the node's disk.
    Elsewhere it stores nothing, and such volumes rotate again once kubelet republishes them.
    """

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "auth"
        self.enabled = False

    def open(self) -> dict[str, AuthMaterial]:
        self.enabled = on_tmpfs(self.dir.parent)
        if not self.enabled:
            if self.dir.is_dir():
                for stale in self.dir.glob("*.json"):
                    stale.unlink(missing_ok=True)
            return {}
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        out: dict[str, AuthMaterial] = {}
        for path in self.dir.glob("*.json"):
            try:
                raw = json.loads(path.read_bytes())
                out[str(raw["target_path"])] = AuthMaterial(
                    client_secret=str(raw.get("client_secret", "")),
                    sa_token=str(raw.get("sa_token", "")),
                    sa_token_expiry=float(raw.get("sa_token_expiry", 0.0)),
                )
            except Exception:  # never the content: it holds secrets
                log.warning("skipping unreadable credentials file %s", path.name)
        return out

    def save(self, target: str, auth: AuthMaterial) -> None:
        if not self.enabled:
            return
        data = json.dumps(
            {
                "target_path": target,
                "client_secret": auth.client_secret,
                "sa_token": auth.sa_token,
                "sa_token_expiry": auth.sa_token_expiry,
            }
        ).encode()
        write_atomically(self._path(target), data, mode=0o600)

    def delete(self, target: str) -> None:
        self._path(target).unlink(missing_ok=True)

    def _path(self, target: str) -> Path:
        return self.dir / record_file_name("auth", target)


def _safe(volume_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in volume_id)
