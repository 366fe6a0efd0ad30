"""The secrets-store provider front door on the wire: `v1alpha1.CSIDriverProvider`.

The upstream secrets-store CSI driver (`secrets-store.csi.k8s.io`) dials
`<provider dir>/azure.sock` and calls:

- `Version(version)` -> `{version: "v1alpha1", runtime_name: "kv-driver", runtime_version}`;
- `Mount(attributes, secrets, target_path, permission, current_object_version)` ->
  `{object_version: [{id, version}], files: [{path, mode, contents}]}`. `attributes` and
  `secrets` are JSON objects of strings, `permission` the default mode as a decimal number.
  `current_object_version` is accepted and unused: every Mount answers with the whole volume.

A failure ends the call with a gRPC status whose code says whether it is worth retrying (the
same codes a CSI publish gets: `INVALID_ARGUMENT`, `PERMISSION_DENIED`, `NOT_FOUND`,
`UNAVAILABLE`, `RESOURCE_EXHAUSTED`, ...); the driver passes it on to kubelet. (provider-azure
answers every failure with `UNKNOWN`, which kubelet treats as final.) Requests are logged by
their size and keys, never values: attributes carry service-account tokens and secrets carry
client secrets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import grpc

from azcommon.errors import KvError
from azcommon.log import log_unexpected
from driver.provider.mount import ProviderMounts, decode
from driver.provider.proto import service_pb2, service_pb2_grpc

log = logging.getLogger(__name__)

API_VERSION = "v1alpha1"
RUNTIME_NAME = "kv-driver"
# What the secrets-store driver accepts by default (--max-call-recv-msg-size), and the most a
# Kubernetes Secret holds (its secretObjects sync).
DRIVER_RECEIVE_LIMIT = 4 * 1024 * 1024
SECRET_LIMIT = 1024 * 1024


class ProviderService(service_pb2_grpc.CSIDriverProviderServicer):
    """Version and Mount for the secrets-store CSI driver."""

    def __init__(self, mounts: ProviderMounts, runtime_version: str) -> None:
        self._mounts = mounts
        self._runtime_version = runtime_version

    def Version(
        self, request: service_pb2.VersionRequest, context: grpc.ServicerContext
    ) -> service_pb2.VersionResponse:
        return service_pb2.VersionResponse(
            version=API_VERSION, runtime_name=RUNTIME_NAME, runtime_version=self._runtime_version
        )

    def Mount(
        self, request: service_pb2.MountRequest, context: grpc.ServicerContext
    ) -> service_pb2.MountResponse:
        log.debug(
            "Mount target_path=%s attributes=%d bytes secrets=%d bytes permission=%s",
            request.target_path,
            len(request.attributes),
            len(request.secrets),
            request.permission,
        )
        try:
            answer = self._mounts.mount(
                decode(request.attributes, request.secrets, request.target_path, request.permission)
            )
        except Exception as exc:
            _abort(context, exc, f"Mount {request.target_path or '(no target_path)'}")
        response = service_pb2.MountResponse(
            object_version=[
                service_pb2.ObjectVersion(id=v.id, version=v.version)
                for v in answer.object_versions
            ],
            files=[
                service_pb2.File(path=f.path, mode=f.mode, contents=f.data) for f in answer.files
            ],
        )
        _warn_if_large(response.ByteSize(), request.target_path)
        return response


def _warn_if_large(size: int, target: str) -> None:
    """Sent anyway (the driver's limit may have been raised), but say what will go wrong."""
    if size > DRIVER_RECEIVE_LIMIT:
        log.warning(
            "Mount %s: the answer is %d bytes; the secrets-store driver refuses more than %d"
            " unless its --max-call-recv-msg-size is raised",
            target,
            size,
            DRIVER_RECEIVE_LIMIT,
        )
    elif size > SECRET_LIMIT:
        log.warning(
            "Mount %s: the answer is %d bytes; syncing it to a Kubernetes Secret (secretObjects)"
            " fails above %d",
            target,
            size,
            SECRET_LIMIT,
        )


def _abort(context: grpc.ServicerContext, error: BaseException, what: str) -> NoReturn:
    """End the call with the error's code (messages of our errors never hold secrets)."""
    if isinstance(error, KvError):
        log.warning("%s failed: %s: %s", what, error.code, error)
        code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)
        context.abort(code, str(error))
    log_unexpected(log, what, error)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})")
    raise AssertionError("unreachable")  # context.abort always raises


def answers(socket: Path, timeout: float = 2.0) -> bool:
    """True when the provider socket answers Version (the daemon's health check)."""
    try:
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            stub = service_pb2_grpc.CSIDriverProviderStub(channel)
            reply = stub.Version(service_pb2.VersionRequest(version=API_VERSION), timeout=timeout)
            return bool(reply.version == API_VERSION)
    except grpc.RpcError:
        return False


def add_to_server(server: grpc.Server, mounts: ProviderMounts, runtime_version: str) -> None:
    service_pb2_grpc.add_CSIDriverProviderServicer_to_server(
        ProviderService(mounts, runtime_version), server
    )
