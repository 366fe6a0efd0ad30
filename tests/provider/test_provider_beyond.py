"""Optional objects, several vaults, selection and split certificates through the provider front
door: the same files as a CSI volume of ours, and an object version for every entry.

These features come with issue 15's items 1-4; until the parser knows them this module skips."""

from __future__ import annotations

import json
import uuid

import pytest

from azcommon.errors import InvalidArgument
from devstack.client import Devstack
from devstack.harness import world
from devstack.harness.provider import (
    answer_files,
    answer_versions,
    mount_request,
    spc_attributes,
    volume_files,
)
from driver.spec import parse_volume
from tests.csi.support import new_volume_id
from tests.provider.conftest import ProviderDaemon


def objects_yaml(*entries: dict[str, str]) -> str:
    lines = ["array:"]
    for entry in entries:
        lines.append("  - |")
        lines.extend(f"    {k}: {json.dumps(v)}" for k, v in entry.items())
    return "\n".join(lines) + "\n"


def _knows_the_new_options() -> bool:
    probe = {
        "usePodIdentity": "true",
        "keyvaultName": world.VAULT,
        "tenantId": world.TENANT,
        "csi.storage.k8s.io/pod.name": world.CSI_POD,
        "csi.storage.k8s.io/pod.namespace": world.NAMESPACE,
        "objects": objects_yaml(
            {"objectName": "a", "objectType": "secret", "optional": "true"},
            {"objectNamePattern": "b-*", "objectType": "secret", "objectAlias": "b"},
        ),
    }
    try:
        parse_volume(probe)
    except InvalidArgument:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _knows_the_new_options(),
    reason="optional objects, several vaults and selection arrive with issue 15 items 1-4",
)


def entries(later: str) -> tuple[dict[str, str], ...]:
    return (
        {"objectName": "secret1", "objectType": "secret"},
        {"objectName": later, "objectType": "secret", "optional": "true"},
        {
            "objectName": "secret1",
            "objectType": "secret",
            "keyvaultName": world.OTHER_VAULT,
            "objectAlias": "other/secret1",
        },
        {"objectNamePattern": "app-secret-*", "objectType": "secret", "objectAlias": "app"},
        {
            "objectName": "pfx-cert",
            "objectType": "secret",
            "objectAlias": "tls/server",
            "certParts": "key:0600,crt,chain",
        },
    )


def test_the_new_options_answer_as_a_csi_volume_and_name_every_entry(
    provider: ProviderDaemon, devstack: Devstack
) -> None:
    daemon, client = provider
    # The seed pod's identity may read otherkv too (the seed grants it testkv only).
    devstack.set_policy(world.OTHER_VAULT, "pod-identity", secrets=["get", "list"])
    later = f"provider-later-{uuid.uuid4().hex[:8]}"
    params = {
        "usePodIdentity": "true",
        "nmiport": str(devstack.nmi_port),
        "keyvaultName": world.VAULT,
        "tenantId": world.TENANT,
        "objects": objects_yaml(*entries(later)),
    }

    target = daemon.target("beyond")
    volume_id = new_volume_id()
    csi_attrs = daemon.pod_attributes()
    del csi_attrs["keyvaultobjectnames"], csi_attrs["keyvaultobjecttypes"]
    csi_attrs.update(params)
    daemon.publish(volume_id, target, csi_attrs)
    try:
        on_disk = volume_files(target)
    finally:
        daemon.unpublish(volume_id, target)

    answer = client.mount(mount_request(spc_attributes(params)))
    files = answer_files(answer)
    assert files == on_disk
    assert files["other/secret1"][1] == b"otherkv-secret1-value"
    assert files["tls/server.key"][0] == 0o600
    assert {"app/app-secret-1", "app/app-secret-2", "app/app-secret-3"} <= set(files)
    assert later not in files

    ids = [v.id for v in answer.object_version]
    assert len(ids) == len(set(ids))
    versions = answer_versions(answer)
    assert versions[f"secret/{later}"] == ""  # optional, missing: named, no version
    assert versions[f"{world.OTHER_VAULT}/secret/secret1"]
    assert versions["secret/secret1"] and versions["secret/pfx-cert"]
    assert {"secret/app-secret-1", "secret/app-secret-2", "secret/app-secret-3"} <= set(versions)

    # The optional object appears: the next Mount (a rotation republish) has it.
    created = devstack.set_secret(world.VAULT, later, "here now")
    answer = client.mount(mount_request(spc_attributes(params)))
    assert answer_files(answer)[later] == (0o644, b"here now")
    assert answer_versions(answer)[f"secret/{later}"] == created
