"""A placeholder Controller service for a node-only plugin.

We do not advertise CONTROLLER_SERVICE, so kubelet and the external sidecars never call it. It
exists because conformance tools (csi-sanity) call ControllerGetCapabilities on the plugin's
socket before every Node test and fail on "method not found". It answers with the single
capability RPC UNKNOWN (a non-empty list: an empty one reads as "missing" in Go clients), which
tells a caller there is nothing to use. Only that method is registered, so every other
Controller RPC gets grpc's own UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc

from driver.csi.proto import csi_pb2

SERVICE = "csi.v1.Controller"
_Rpc = csi_pb2.ControllerServiceCapability.RPC


def controller_get_capabilities(
    request: csi_pb2.ControllerGetCapabilitiesRequest, context: grpc.ServicerContext
) -> csi_pb2.ControllerGetCapabilitiesResponse:
    return csi_pb2.ControllerGetCapabilitiesResponse(
        capabilities=[csi_pb2.ControllerServiceCapability(rpc=_Rpc(type=_Rpc.Type.UNKNOWN))]
    )


def placeholder_controller() -> grpc.GenericRpcHandler:
    handler = grpc.unary_unary_rpc_method_handler(
        controller_get_capabilities,
        request_deserializer=csi_pb2.ControllerGetCapabilitiesRequest.FromString,
        response_serializer=csi_pb2.ControllerGetCapabilitiesResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"ControllerGetCapabilities": handler})
