"""CSI Node requests shaped the way kubelet sends them for an inline (ephemeral) volume."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import grpc

from driver.csi.proto import csi_pb2

Status = tuple[grpc.StatusCode, str]


def publish_request(
    volume_id: str,
    target: Path,
    attributes: Mapping[str, str],
    *,
    readonly: bool = True,
    secrets: Mapping[str, str] | None = None,
) -> csi_pb2.NodePublishVolumeRequest:
    """NodePublishVolume for a read-only mount volume, as kubelet asks for a secrets volume."""
    mode = csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_READER_ONLY
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_id,
        target_path=str(target),
        readonly=readonly,
        volume_capability=csi_pb2.VolumeCapability(
            mount=csi_pb2.VolumeCapability.MountVolume(),
            access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
        ),
        volume_context=dict(attributes),
        secrets=dict(secrets or {}),
    )


def unpublish_request(volume_id: str, target: Path) -> csi_pb2.NodeUnpublishVolumeRequest:
    return csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target))


def status_of(rpc: Callable[..., object], request: object, timeout: float = 30.0) -> Status:
    """Call a unary RPC and return its (status code, details) instead of raising."""
    try:
        rpc(request, timeout=timeout)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""
