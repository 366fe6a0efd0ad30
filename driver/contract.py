"""What the front doors (CSI servicer, FlexVolume bridge) exchange with the volume use-cases.

Both edges turn what kubelet sent into one `PublishRequest` and hand it to a `VolumeService`; the
core does the parsing, so a CSI volume and a FlexVolume with the same attributes/options behave the
same (same errors, same rotation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class PublishRequest:
    """One volume as kubelet asked for it, before any parsing."""

    volume_id: str
    target_path: Path
    # CSI volume_context or FlexVolume options, raw (FlexVolume's carry base64 secrets: no repr)
    attributes: Mapping[str, str] = field(repr=False)
    # CSI secrets; {} for FlexVolume (its secrets arrive as kubernetes.io/secret/* in attributes)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    readonly: bool = True
    source: str = "csi"  # "csi" or "flexvolume"
    # The pod's fsGroup as kubelet passed it to CSI (VOLUME_MOUNT_GROUP), "" when none; a
    # FlexVolume's arrives in its options (kubernetes.io/mounterArgs.FsGroup).
    fs_group: str = ""


@dataclass(frozen=True)
class FileInfo:
    """One file of a published volume (never its contents)."""

    path: str
    size: int
    mode: int


@dataclass(frozen=True)
class PublishResult:
    """What a publish did: the files now in place and the object versions they hold."""

    volume_id: str
    target_path: Path
    files: tuple[FileInfo, ...]
    versions: dict[str, list[str]]
    fetched: bool  # False when a republish was served without asking Key Vault


class VolumeService(Protocol):
    """What the edges need from the core. Errors are `azcommon.errors.KvError`."""

    def publish(self, request: PublishRequest) -> object: ...

    def unpublish(self, volume_id: str, target_path: Path) -> None: ...
