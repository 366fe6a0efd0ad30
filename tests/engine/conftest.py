"""An engine wired exactly as the daemon wires it, pointed at the devstack."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from driver.app import Core, build_core
from driver.config import Settings
from driver.contract import PublishRequest

TENANT = "11111111-1111-1111-1111-111111111111"


@pytest.fixture
def make_core(devstack: Any, tmp_path: Path, mount_mode: str) -> Iterator[Callable[..., Core]]:
    cores: list[Core] = []

    def make(**overrides: Any) -> Core:
        settings = Settings(
            **{
                "state_dir": tmp_path / "state",
                "mount_mode": mount_mode,
                "cloud_config": Path(devstack.cloud_config),
                "rotation_poll_interval": 120.0,
                "nmi_deadline": 2.0,
                "request_timeout": 2.0,
                **overrides,
            }
        )
        core = build_core(settings)
        core.engine.restore()
        cores.append(core)
        return core

    yield make
    for core in cores:
        for record in core.ledger.all():
            core.engine.unpublish(record.volume_id, Path(record.target_path))
        core.close()


@pytest.fixture
def pod_request(tmp_path: Path, devstack: Any) -> Callable[..., PublishRequest]:
    """A CSI-style request for the seed pod, with pod identity, overridable."""

    def make(attributes: dict[str, str] | None = None, **kw: Any) -> PublishRequest:
        attrs = {
            "usePodIdentity": "true",
            "nmiport": str(devstack.nmi_port),
            "keyvaultName": "testkv",
            "tenantId": TENANT,
            "csi.storage.k8s.io/pod.name": "nginx-csi-kv-podid",
            "csi.storage.k8s.io/pod.namespace": "default",
            "csi.storage.k8s.io/pod.uid": str(uuid.uuid4()),
            "keyvaultobjectnames": "secret1",
            "keyvaultobjecttypes": "secret",
        }
        attrs.update(attributes or {})
        attrs = {k: v for k, v in attrs.items() if v is not None}
        kw.setdefault("volume_id", f"vol-{uuid.uuid4().hex[:12]}")
        kw.setdefault("target_path", tmp_path / "pods" / kw["volume_id"] / "mount")
        Path(kw["target_path"]).parent.mkdir(parents=True, exist_ok=True)
        return PublishRequest(attributes=attrs, **kw)

    return make
