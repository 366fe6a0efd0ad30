"""A client secret put in CSI volume attributes (which anyone who reads the pod sees) is refused
before anything uses or logs it; the daemon runs with debug logging, which logs every request."""

from __future__ import annotations

import base64
import uuid

import grpc
import pytest

from devstack.harness import world
from devstack.harness.csi_requests import publish_request, status_of
from devstack.harness.daemon import DaemonProcess


@pytest.mark.parametrize(
    "key", ["clientsecret", "clientSecret", "kubernetes.io/secret/clientsecret", "dbPassword"]
)
def test_a_secret_in_volume_attributes_is_refused_and_never_logged(
    csi: DaemonProcess, key: str
) -> None:
    secret = csi.devstack.client_secret(world.SP_IDENTITY)  # a working secret: it must not work
    value = (
        base64.b64encode(secret.encode()).decode() if key.startswith("kubernetes.io") else secret
    )
    attributes = csi.pod_attributes(usePodIdentity="false")
    attributes[key] = value
    if key.startswith("kubernetes.io"):
        # With its client id, this is a complete service principal that used to mount.
        client_id = csi.devstack.client_id(world.SP_IDENTITY)
        attributes["kubernetes.io/secret/clientid"] = base64.b64encode(client_id.encode()).decode()
    volume_id = f"attrsecret-{uuid.uuid4().hex[:8]}"
    target = csi.target(volume_id)
    code, details = status_of(
        csi.node.NodePublishVolume, publish_request(volume_id, target, attributes)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert key in details and "nodePublishSecretRef" in details
    assert not target.exists() or not any(target.iterdir())
    log = csi.log()
    assert "NodePublishVolume" in log  # the request was logged, redacted
    for leaked in (secret, base64.b64encode(secret.encode()).decode()):
        assert leaked not in log
        assert leaked not in details
