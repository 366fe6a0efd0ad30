"""Log-safe rendering of CSI requests never contains secrets or service-account tokens."""

from __future__ import annotations

import json

from driver.csi.proto import csi_pb2, pluginregistration_pb2
from driver.csi.redact import REDACTED, redacted

CLIENT_SECRET = "s3cr3t-client-value"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload.signature"


def publish_request() -> csi_pb2.NodePublishVolumeRequest:
    tokens = json.dumps(
        {
            "api://AzureADTokenExchange": {
                "token": SA_TOKEN,
                "expirationTimestamp": "2030-01-01T00:00:00Z",
            }
        }
    )
    return csi_pb2.NodePublishVolumeRequest(
        volume_id="csi-0123",
        target_path="/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/kv/mount",
        readonly=True,
        volume_capability=csi_pb2.VolumeCapability(
            mount=csi_pb2.VolumeCapability.MountVolume(fs_type="tmpfs"),
            access_mode=csi_pb2.VolumeCapability.AccessMode(
                mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_READER_ONLY
            ),
        ),
        secrets={"clientid": "my-client-id", "clientsecret": CLIENT_SECRET},
        volume_context={
            "keyvaultname": "myvault",
            "csi.storage.k8s.io/pod.name": "web-0",
            "csi.storage.k8s.io/serviceAccount.tokens": tokens,
        },
    )


def test_publish_request_hides_secrets_and_tokens() -> None:
    out = redacted(publish_request())
    text = json.dumps(out)  # must be JSON-able as is

    assert CLIENT_SECRET not in text
    assert "my-client-id" not in text  # the whole secrets map goes, keys and all
    assert SA_TOKEN not in text
    assert out["secrets"] == REDACTED
    assert out["volume_context"]["csi.storage.k8s.io/serviceAccount.tokens"] == REDACTED
    # Everything else stays readable for the operator.
    assert out["volume_context"]["keyvaultname"] == "myvault"
    assert out["volume_context"]["csi.storage.k8s.io/pod.name"] == "web-0"
    assert out["volume_id"] == "csi-0123"
    assert out["readonly"] is True
    assert out["volume_capability"]["access_mode"]["mode"] == "SINGLE_NODE_READER_ONLY"
    assert out["volume_capability"]["mount"] == {"fs_type": "tmpfs"}


def test_create_volume_request_hides_secrets_and_keeps_the_rest() -> None:
    request = csi_pb2.CreateVolumeRequest(
        name="pvc-1",
        parameters={"skuname": "standard"},
        secrets={"password": "hunter2-value"},
        capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 30),
        volume_capabilities=[
            csi_pb2.VolumeCapability(
                block=csi_pb2.VolumeCapability.BlockVolume(),
                access_mode=csi_pb2.VolumeCapability.AccessMode(mode=1),
            )
        ],
    )
    out = redacted(request)
    text = json.dumps(out)

    assert "hunter2-value" not in text
    assert out["secrets"] == REDACTED
    assert out["parameters"] == {"skuname": "standard"}
    assert out["capacity_range"] == {"required_bytes": 1 << 30}
    assert out["volume_capabilities"] == [
        {"block": {}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}
    ]


def test_every_secret_field_in_the_spec_is_found_from_descriptors() -> None:
    # Fill every csi_secret map in every top-level CSI message and check none leaks.
    checked = 0
    for message_type in csi_pb2.DESCRIPTOR.message_types_by_name.values():
        secret_fields = [
            f for f in message_type.fields if f.GetOptions().Extensions[csi_pb2.csi_secret]
        ]
        if not secret_fields:
            continue
        message = getattr(csi_pb2, message_type.name)()
        for field in secret_fields:
            getattr(message, field.name)["k"] = f"value-of-{message_type.name}"
        assert f"value-of-{message_type.name}" not in json.dumps(redacted(message))
        checked += 1
    assert checked >= 15


def test_messages_without_secrets_render_whole() -> None:
    info = pluginregistration_pb2.PluginInfo(
        type="CSIPlugin",
        name="kv.csi.azure.com",
        endpoint="/var/lib/kubelet/plugins/kv.csi.azure.com/csi.sock",
        supported_versions=["1.0.0"],
    )
    assert redacted(info) == {
        "type": "CSIPlugin",
        "name": "kv.csi.azure.com",
        "endpoint": "/var/lib/kubelet/plugins/kv.csi.azure.com/csi.sock",
        "supported_versions": ["1.0.0"],
    }
    probe = csi_pb2.ProbeResponse()
    probe.ready.value = True
    assert redacted(probe) == {"ready": {"value": True}}
