"""CSI Identity service: who we are, what we offer (no controller), whether we can serve."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf.wrappers_pb2 import BoolValue

from driver.csi.proto import csi_pb2, csi_pb2_grpc


class IdentityService(csi_pb2_grpc.IdentityServicer):
    def __init__(self, name: str, version: str, ready: Callable[[], bool]) -> None:
        self._name = name
        self._version = version
        self._ready = ready

    def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name=self._name, vendor_version=self._version)

    def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        # A node-only plugin: advertising no CONTROLLER_SERVICE tells the CO not to look for one.
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=[])

    def Probe(
        self, request: csi_pb2.ProbeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ProbeResponse:
        return csi_pb2.ProbeResponse(ready=BoolValue(value=self._ready()))
