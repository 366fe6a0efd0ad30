"""The committed generated code matches the .proto files, and carries the published API."""

from __future__ import annotations

from pathlib import Path

from driver.csi.proto import csi_pb2, csi_pb2_grpc, pluginregistration_pb2
from tools import protogen


def test_committed_generated_code_is_fresh(tmp_path: Path, repo_root: Path) -> None:
    protogen.generate(tmp_path, protos_dir=repo_root / "protos")
    fresh_dir = tmp_path / protogen.PACKAGE_DIR
    committed_dir = repo_root / protogen.PACKAGE_DIR

    fresh = sorted(p.name for p in fresh_dir.iterdir() if p.is_file())
    assert fresh == protogen.generated_names()
    committed = sorted(
        p.name for p in committed_dir.iterdir() if p.is_file() and p.name != "__init__.py"
    )
    assert committed == fresh, "generated files differ from the committed set: run make proto"

    stale = [
        name
        for name in fresh
        if (fresh_dir / name).read_bytes() != (committed_dir / name).read_bytes()
    ]
    assert not stale, f"stale generated code in {protogen.PACKAGE_DIR}: {stale}; run make proto"


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
