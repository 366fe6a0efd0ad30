"""A CSI node plugin's gRPC endpoint on a unix socket: one channel, the Identity and Node stubs,
and publish/unpublish as kubelet sends them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc

from devstack.harness.csi_requests import publish_request, unpublish_request
from driver.csi.proto import csi_pb2_grpc

# gRPC's default reconnect backoff starts at 1 s: a dial that fails once while the daemon starts
# or restarts would stall the next call that long. A local socket is cheap to retry.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 200),
]


class CsiEndpoint:
    """The CSI socket at `csi_socket`, dialled lazily; `close_channel()` drops the channel (a
    restarted plugin is dialled afresh)."""

    def __init__(self, csi_socket: Path) -> None:
        self.csi_socket = csi_socket
        self._channel: grpc.Channel | None = None

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(
                f"unix://{self.csi_socket}", options=_CHANNEL_OPTIONS
            )
        return self._channel

    @property
    def identity(self) -> csi_pb2_grpc.IdentityStub:
        return csi_pb2_grpc.IdentityStub(self.channel)

    @property
    def node(self) -> csi_pb2_grpc.NodeStub:
        return csi_pb2_grpc.NodeStub(self.channel)

    def publish(
        self,
        volume_id: str,
        target: Path,
        attributes: Mapping[str, str],
        *,
        secrets: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        """NodePublishVolume; raises grpc.RpcError when the driver refuses."""
        request = publish_request(volume_id, target, attributes, secrets=secrets)
        self.node.NodePublishVolume(request, timeout=timeout)

    def unpublish(self, volume_id: str, target: Path, timeout: float = 60.0) -> None:
        self.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=timeout)
