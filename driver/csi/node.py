"""CSI Node service: unpack the request, call the engine, build the response."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import grpc

from azcommon.errors import InvalidArgument
from driver.contract import PublishRequest, VolumeService
from driver.csi.proto import csi_pb2, csi_pb2_grpc
from driver.csi.redact import redacted
from driver.csi.status import abort, require
from driver.spec.keys import quote, secret_looking_attributes

log = logging.getLogger(__name__)


def refuse_secret_attributes(context: Mapping[str, str]) -> None:
    """Credentials belong in `secrets`: attributes are readable by anyone who reads the pod."""
    keys = secret_looking_attributes(context)
    if keys:
        named = ", ".join(quote(k, 64) for k in keys)
        raise InvalidArgument(
            f"volume attribute {named} looks like a secret, and volume attributes are not secret "
            "(anyone who can read the pod sees them); put clientid and clientsecret in the "
            "Kubernetes secret named by nodePublishSecretRef"
        )


class NodeService(csi_pb2_grpc.NodeServicer):
    def __init__(self, engine: VolumeService, node_id: str) -> None:
        self._engine = engine
        self._node_id = node_id

    def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        log.debug("NodePublishVolume %s", json.dumps(redacted(request)))
        try:
            require(request.volume_id, "volume_id")
            require(request.target_path, "target_path")
            if not request.HasField("volume_capability"):
                raise InvalidArgument("volume_capability is required")
            if request.volume_capability.HasField("block"):
                raise InvalidArgument("block access is not supported: Key Vault volumes are files")
            if not request.readonly:
                raise InvalidArgument(
                    "readonly must be true: mount Key Vault volumes with `readOnly: true`"
                )
            refuse_secret_attributes(request.volume_context)
            self._engine.publish(
                PublishRequest(
                    volume_id=request.volume_id,
                    target_path=Path(request.target_path),
                    attributes=dict(request.volume_context),
                    secrets=dict(request.secrets),
                    readonly=request.readonly,
                    source="csi",
                    fs_group=request.volume_capability.mount.volume_mount_group,
                )
            )
        except Exception as exc:
            abort(context, exc, f"NodePublishVolume {request.volume_id or '(no volume_id)'}")
        return csi_pb2.NodePublishVolumeResponse()

    def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        log.debug("NodeUnpublishVolume %s", json.dumps(redacted(request)))
        try:
            require(request.volume_id, "volume_id")
            require(request.target_path, "target_path")
            self._engine.unpublish(request.volume_id, Path(request.target_path))
        except Exception as exc:
            abort(context, exc, f"NodeUnpublishVolume {request.volume_id or '(no volume_id)'}")
        return csi_pb2.NodeUnpublishVolumeResponse()

    def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetInfoResponse:
        return csi_pb2.NodeGetInfoResponse(node_id=self._node_id)

    def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        # No staging, stats or expansion: kubelet calls only publish/unpublish. The pod's
        # fsGroup is ours to apply (kubelet cannot chown files on a read-only tmpfs it did not
        # write, and rotation writes new ones), so kubelet hands it over in volume_mount_group.
        rpc = csi_pb2.NodeServiceCapability.RPC
        return csi_pb2.NodeGetCapabilitiesResponse(
            capabilities=[
                csi_pb2.NodeServiceCapability(rpc=rpc(type=rpc.VOLUME_MOUNT_GROUP)),
            ]
        )

    # kubelet never calls these for a plugin without the matching capabilities.

    def NodeStageVolume(
        self, request: csi_pb2.NodeStageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeStageVolumeResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "NodeStageVolume is not supported")
        raise AssertionError("unreachable")

    def NodeUnstageVolume(
        self, request: csi_pb2.NodeUnstageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnstageVolumeResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "NodeUnstageVolume is not supported")
        raise AssertionError("unreachable")

    def NodeGetVolumeStats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "NodeGetVolumeStats is not supported")
        raise AssertionError("unreachable")

    def NodeExpandVolume(
        self, request: csi_pb2.NodeExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeExpandVolumeResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "NodeExpandVolume is not supported")
        raise AssertionError("unreachable")
