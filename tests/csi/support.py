"""Small helpers shared by the CSI test modules."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc

from devstack.harness.node import is_mounted

# Codes kubelet treats as "still in progress": it keeps the target directory and retries.
NON_FINAL = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def new_volume_id() -> str:
    return f"csi-{uuid.uuid4().hex}"


def assert_gone(target: Path) -> None:
    assert not is_mounted(target), f"{target} is still mounted"
    assert not target.exists(), f"{target} still exists"
