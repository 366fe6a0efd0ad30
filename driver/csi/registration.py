"""kubelet plugin registration without the node-driver-registrar sidecar.

kubelet's plugin watcher finds `<registration-dir>/<driver>-reg.sock`, calls GetInfo, dials the
advertised endpoint, and reports back through NotifyRegistrationStatus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from driver.csi.proto import pluginregistration_pb2 as reg_pb2
from driver.csi.proto import pluginregistration_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)
SUPPORTED_VERSIONS = ("1.0.0",)


class RegistrationService(reg_grpc.RegistrationServicer):
    def __init__(self, name: str, endpoint: str, on_rejected: Callable[[str], None]) -> None:
        self._name = name
        self._endpoint = endpoint
        self._on_rejected = on_rejected

    def GetInfo(
        self, request: reg_pb2.InfoRequest, context: grpc.ServicerContext
    ) -> reg_pb2.PluginInfo:
        return reg_pb2.PluginInfo(
            type="CSIPlugin",
            name=self._name,
            endpoint=self._endpoint,
            supported_versions=list(SUPPORTED_VERSIONS),
        )

    def NotifyRegistrationStatus(
        self, request: reg_pb2.RegistrationStatus, context: grpc.ServicerContext
    ) -> reg_pb2.RegistrationStatusResponse:
        if request.plugin_registered:
            log.info("kubelet registered plugin %s at %s", self._name, self._endpoint)
        else:
            log.error("kubelet rejected plugin registration: %s", request.error or "(no reason)")
            # Exiting makes the pod restart and registration start over.
            self._on_rejected(request.error)
        return reg_pb2.RegistrationStatusResponse()
