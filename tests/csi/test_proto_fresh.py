"""The committed generated code matches the .proto files, and carries the published API."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from driver.csi.proto import csi_pb2, csi_pb2_grpc, pluginregistration_pb2
from driver.provider.proto import service_pb2, service_pb2_grpc
from tools import protogen


@pytest.mark.parametrize("group", protogen.GROUPS, ids=lambda g: g.package_dir)
def test_committed_generated_code_is_fresh(
    tmp_path: Path, repo_root: Path, group: protogen.ProtoGroup
) -> None:
    protogen.generate(tmp_path, protos_dir=repo_root / "protos")
    fresh_dir = tmp_path / group.package_dir
    committed_dir = repo_root / group.package_dir

    fresh = sorted(p.name for p in fresh_dir.iterdir() if p.is_file())
    assert fresh == protogen.generated_names(group)
    committed = sorted(
        p.name for p in committed_dir.iterdir() if p.is_file() and p.name != "__init__.py"
    )
    assert committed == fresh, "generated files differ from the committed set: run make proto"

    stale = [
        name
        for name in fresh
        if (fresh_dir / name).read_bytes() != (committed_dir / name).read_bytes()
    ]
    assert not stale, f"stale generated code in {group.package_dir}: {stale}; run make proto"


def test_csi_services_and_methods() -> None:
    services = csi_pb2.DESCRIPTOR.services_by_name
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    assert set(services) == {
        "Identity",
        "Controller",
        "GroupController",
        "SnapshotMetadata",
        "Node",
    }
    assert [m.name for m in services["Identity"].methods] == [
        "GetPluginInfo",
        "GetPluginCapabilities",
        "Probe",
    ]
    assert [m.name for m in services["Node"].methods] == [
        "NodeStageVolume",
        "NodeUnstageVolume",
        "NodePublishVolume",
        "NodeUnpublishVolume",
        "NodeGetVolumeStats",
        "NodeExpandVolume",
        "NodeGetCapabilities",
        "NodeGetInfo",
    ]
    assert services["SnapshotMetadata"].GetOptions().Extensions[csi_pb2.alpha_service]
    # The wire path kubelet dials.
    assert hasattr(csi_pb2_grpc, "NodeServicer")
    assert services["Node"].methods_by_name["NodePublishVolume"].full_name == (
        "csi.v1.Node.NodePublishVolume"
    )


def test_csi_spot_checked_fields() -> None:
    publish = csi_pb2.NodePublishVolumeRequest.DESCRIPTOR.fields_by_name
    assert publish["target_path"].number == 4
    assert publish["readonly"].number == 6
    assert publish["secrets"].number == 7
    assert publish["secrets"].GetOptions().Extensions[csi_pb2.csi_secret] is True
    assert publish["volume_context"].number == 8
    assert publish["volume_context"].GetOptions().Extensions[csi_pb2.csi_secret] is False

    create = csi_pb2.CreateVolumeRequest.DESCRIPTOR.fields_by_name
    assert create["secrets"].number == 5
    assert create["secrets"].GetOptions().Extensions[csi_pb2.csi_secret] is True
    assert create["mutable_parameters"].GetOptions().Extensions[csi_pb2.alpha_field] is True

    info = csi_pb2.NodeGetInfoResponse.DESCRIPTOR.fields_by_name
    assert (info["node_id"].number, info["max_volumes_per_node"].number) == (1, 2)
    assert csi_pb2.csi_secret.number == 1059
    assert csi_pb2.alpha_field.number == 1060


def test_plugin_registration_api() -> None:
    assert pluginregistration_pb2.DESCRIPTOR.package == "pluginregistration"
    service = pluginregistration_pb2.DESCRIPTOR.services_by_name["Registration"]
    assert [(m.name, m.input_type.name, m.output_type.name) for m in service.methods] == [
        ("GetInfo", "InfoRequest", "PluginInfo"),
        ("NotifyRegistrationStatus", "RegistrationStatus", "RegistrationStatusResponse"),
    ]
    info = pluginregistration_pb2.PluginInfo.DESCRIPTOR.fields_by_name
    assert {name: f.number for name, f in info.items()} == {
        "type": 1,
        "name": 2,
        "endpoint": 3,
        "supported_versions": 4,
    }
    status = pluginregistration_pb2.RegistrationStatus.DESCRIPTOR.fields_by_name
    assert (status["plugin_registered"].number, status["error"].number) == (1, 2)


def test_secrets_store_provider_api_is_the_published_v1alpha1() -> None:
    """Package, service, methods, and every message's fields (name, number, type, label) as in
    sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1/service.proto."""
    file = service_pb2.DESCRIPTOR
    assert file.package == "v1alpha1"
    assert file.GetOptions().go_package == "./provider/v1alpha1"
    service = file.services_by_name["CSIDriverProvider"]
    assert [(m.name, m.input_type.name, m.output_type.name) for m in service.methods] == [
        ("Version", "VersionRequest", "VersionResponse"),
        ("Mount", "MountRequest", "MountResponse"),
    ]
    assert service.methods_by_name["Mount"].full_name == "v1alpha1.CSIDriverProvider.Mount"
    string, message, repeated = (
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_MESSAGE,
        FieldDescriptor.LABEL_REPEATED,
    )
    one = FieldDescriptor.LABEL_OPTIONAL

    def fields(name: str) -> list[tuple[str, int, int, int, str]]:
        return [
            (f.name, f.number, f.type, f.label, f.message_type.name if f.message_type else "")
            for f in file.message_types_by_name[name].fields
        ]

    assert list(file.message_types_by_name) == [
        "VersionRequest",
        "VersionResponse",
        "MountRequest",
        "MountResponse",
        "File",
        "ObjectVersion",
        "Error",
    ]
    assert fields("VersionRequest") == [("version", 1, string, one, "")]
    assert fields("VersionResponse") == [
        ("version", 1, string, one, ""),
        ("runtime_name", 2, string, one, ""),
        ("runtime_version", 3, string, one, ""),
    ]
    assert fields("MountRequest") == [
        ("attributes", 1, string, one, ""),
        ("secrets", 2, string, one, ""),
        ("target_path", 3, string, one, ""),
        ("permission", 4, string, one, ""),
        ("current_object_version", 5, message, repeated, "ObjectVersion"),
    ]
    assert fields("MountResponse") == [
        ("object_version", 1, message, repeated, "ObjectVersion"),
        ("error", 2, message, one, "Error"),
        ("files", 3, message, repeated, "File"),
    ]
    assert fields("File") == [
        ("path", 1, string, one, ""),
        ("mode", 2, FieldDescriptor.TYPE_INT32, one, ""),
        ("contents", 3, FieldDescriptor.TYPE_BYTES, one, ""),
    ]
    assert fields("ObjectVersion") == [("id", 1, string, one, ""), ("version", 2, string, one, "")]
    assert fields("Error") == [("code", 1, string, one, "")]
    assert hasattr(service_pb2_grpc, "CSIDriverProviderServicer")
    assert hasattr(service_pb2_grpc, "CSIDriverProviderStub")
