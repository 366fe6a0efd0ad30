"""A hand-written client of the secrets-store CSI driver's provider API (`v1alpha1`), calling the
way the upstream driver does: over the provider's unix socket, with `attributes` and `secrets` as
Go's `encoding/json` marshals a `map[string]string` and `permission` as a marshalled
`os.FileMode` ("420" for 0644). Also what the driver sends on top of a SecretProviderClass's
parameters, and a reader for a published volume's files to compare answers with."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import grpc

from devstack.harness import world
from driver.provider.proto import service_pb2, service_pb2_grpc

# A file of a volume: relative path -> (mode, bytes).
Files = dict[str, tuple[int, bytes]]


def go_json(values: Mapping[str, str] | None) -> str:
    """A map as Go marshals it: sorted keys, no spaces, `<>&` escaped; a nil map is `null`."""
    if values is None:
        return "null"
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def spc_attributes(
    parameters: Mapping[str, str],
    *,
    spc: str = "azure-kv",
    pod: str = world.CSI_POD,
    namespace: str = world.NAMESPACE,
    uid: str = world.POD_UID,
    service_account: str = "default",
    tokens: str | None = None,
) -> dict[str, str]:
    """What the secrets-store driver sends as `attributes`: the SecretProviderClass parameters
    overlaid with the pod's volume attributes and the keys kubelet adds (podInfoOnMount)."""
    attrs = dict(parameters)
    attrs.update(
        {
            "secretProviderClass": spc,
            "csi.storage.k8s.io/pod.name": pod,
            "csi.storage.k8s.io/pod.namespace": namespace,
            "csi.storage.k8s.io/pod.uid": uid,
            "csi.storage.k8s.io/serviceAccount.name": service_account,
            "csi.storage.k8s.io/ephemeral": "true",
        }
    )
    if tokens is not None:
        attrs["csi.storage.k8s.io/serviceAccount.tokens"] = tokens
    return attrs


def mount_request(
    attributes: Mapping[str, str],
    *,
    secrets: Mapping[str, str] | None = None,
    target_path: str = "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/secrets/mount",
    permission: int = 0o644,
    current: Iterable[tuple[str, str]] = (),
) -> service_pb2.MountRequest:
    """A MountRequest as the secrets-store driver v1.6 builds it."""
    return service_pb2.MountRequest(
        attributes=go_json(attributes),
        secrets=go_json(dict(secrets) if secrets is not None else {}),
        target_path=target_path,
        permission=str(permission),
        current_object_version=[service_pb2.ObjectVersion(id=i, version=v) for i, v in current],
    )


def answer_files(response: service_pb2.MountResponse) -> Files:
    return {f.path: (f.mode, f.contents) for f in response.files}


def answer_versions(response: service_pb2.MountResponse) -> dict[str, str]:
    return {v.id: v.version for v in response.object_version}


def volume_files(root: Path) -> Files:
    """The files a pod sees under a published volume: through the atomic writer's symlinks,
    its own `..data` and `..<timestamp>` entries skipped."""
    out: Files = {}
    for directory, dirs, names in os.walk(root, followlinks=True):
        here = Path(directory)
        if here == root:
            dirs[:] = [d for d in dirs if not d.startswith("..")]
            names = [n for n in names if not n.startswith("..")]
        for name in names:
            path = here / name
            relative = path.relative_to(root).as_posix()
            out[relative] = (path.stat().st_mode & 0o777, path.read_bytes())
    return dict(sorted(out.items()))


# A dial that fails while the daemon starts must not leave the channel in gRPC's 1 s backoff.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 200),
]


class ProviderClient:
    """The provider API's stub on a unix socket."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._channel = grpc.insecure_channel(f"unix://{socket}", options=_CHANNEL_OPTIONS)
        self.stub = service_pb2_grpc.CSIDriverProviderStub(self._channel)

    def wait_ready(self, timeout: float = 30.0) -> ProviderClient:
        """Poll until the socket answers Version (the daemon serves it after its CSI socket)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                try:
                    self.version(timeout=1)
                    return self
                except grpc.RpcError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"the provider socket {self.socket} did not answer in {timeout}s")

    def version(self, timeout: float = 10.0) -> service_pb2.VersionResponse:
        request = service_pb2.VersionRequest(version="v1alpha1")
        answer: service_pb2.VersionResponse = self.stub.Version(request, timeout=timeout)
        return answer

    def mount(
        self, request: service_pb2.MountRequest, timeout: float = 60.0
    ) -> service_pb2.MountResponse:
        answer: service_pb2.MountResponse = self.stub.Mount(request, timeout=timeout)
        return answer

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
