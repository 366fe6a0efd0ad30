"""An engine wired exactly as the daemon wires it, pointed at the devstack."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.client import Devstack
from devstack.harness.attributes import csi_attributes
from devstack.harness.engine import core_settings
from driver.app import Core, build_core
from driver.contract import PublishRequest


@pytest.fixture
def make_core(devstack: Devstack, tmp_path: Path, mount_mode: str) -> Iterator[Callable[..., Core]]:
    cores: list[Core] = []

    def make(**overrides: Any) -> Core:
        core = build_core(core_settings(tmp_path / "state", devstack, mount_mode, **overrides))
        core.upkeep.restore()
        cores.append(core)
        return core

    yield make
    for core in cores:
        for record in core.ledger.all():
            core.engine.unpublish(record.volume_id, Path(record.target_path))
        core.close()


@pytest.fixture
def pod_request(tmp_path: Path, devstack: Devstack) -> Callable[..., PublishRequest]:
    """A CSI-style request for the seed pod, with pod identity, overridable (None removes a
    key)."""

    def make(attributes: dict[str, str | None] | None = None, **kw: Any) -> PublishRequest:
        attrs = csi_attributes(
            devstack.nmi_port, uid=str(uuid.uuid4()), ephemeral=False, extra=attributes
        )
        kw.setdefault("volume_id", f"vol-{uuid.uuid4().hex[:12]}")
        kw.setdefault("target_path", tmp_path / "pods" / kw["volume_id"] / "mount")
        Path(kw["target_path"]).parent.mkdir(parents=True, exist_ok=True)
        return PublishRequest(attributes=attrs, **kw)

    return make
