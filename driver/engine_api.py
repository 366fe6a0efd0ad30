"""The boundary between the edges (CSI servicer, FlexVolume bridge) and the engine.

Both edges turn what kubelet sent into one `PublishRequest` and hand it to an `Engine`; the engine
does the parsing, so a CSI volume and a FlexVolume with the same attributes/options behave the
same (same errors, same rotation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class PublishRequest:
    volume_id: str
    target_path: Path
    # CSI volume_context or FlexVolume options, raw (FlexVolume's carry base64 secrets: no repr)
    attributes: Mapping[str, str] = field(repr=False)
    # CSI secrets; {} for FlexVolume (its secrets arrive as kubernetes.io/secret/* in attributes)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    readonly: bool = True
    source: str = "csi"  # "csi" or "flexvolume"


class Engine(Protocol):
    """What the edges need from the engine. Errors are `driver.errors.KvError`."""

    def publish(self, request: PublishRequest) -> object: ...

    def unpublish(self, volume_id: str, target_path: Path) -> None: ...
