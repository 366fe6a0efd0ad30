"""The secrets-store provider front door, driven as the upstream secrets-store CSI driver drives
provider-azure: a hand-written client of the published `v1alpha1` API over the daemon's real unix
socket, against the devstack. Its answers are compared byte for byte with the files of a CSI
volume of ours for the same objects."""

from __future__ import annotations

import json
import re
import stat
import threading
from pathlib import Path

import grpc
import pytest
import requests

from devstack.client import Devstack
from devstack.harness import world
from devstack.harness.csi_requests import status_of, unpublish_request
from devstack.harness.provider import (
    answer_files,
    answer_versions,
    mount_request,
    spc_attributes,
    volume_files,
)
from tests.csi.support import new_volume_id
from tests.provider.conftest import ProviderDaemon, StartProvider

VERSION = re.compile(r"[0-9a-f]{32}")


def objects_yaml(*entries: dict[str, str]) -> str:
    """A SecretProviderClass `objects` parameter: an `array:` of YAML strings."""
    lines = ["array:"]
    for entry in entries:
        lines.append("  - |")
        lines.extend(f"    {k}: {json.dumps(v)}" for k, v in entry.items())
    return "\n".join(lines) + "\n"


def parameters(devstack: Devstack, *entries: dict[str, str], **extra: str) -> dict[str, str]:
    """SecretProviderClass parameters for the seed vault, as pod identity. (provider-azure
    always dials NMI on 2579; the devstack's NMI has a port of its own, hence `nmiport`.)"""
    return {
        "usePodIdentity": "true",
        "nmiport": str(devstack.nmi_port),
        "keyvaultName": world.VAULT,
        "tenantId": world.TENANT,
        "objects": objects_yaml(*entries),
        **extra,
    }


EVERY_KIND = (
    {"objectName": "secret1", "objectType": "secret", "filePermission": "0600"},
    {"objectName": "key1", "objectType": "key"},
    {"objectName": "ec-key", "objectType": "key", "objectAlias": "keys/ec.pem"},
    {"objectName": "cert1", "objectType": "cert"},
    {"objectName": "ec-cert", "objectType": "cert", "objectAlias": "certs/ec.pem"},
    # A PEM-backed certificate's secret: key and chain, PEM.
    {"objectName": "cert1", "objectType": "secret", "objectAlias": "tls/cert1.pem"},
    # A PKCS#12-backed certificate's secret: the PFX's key, then its chain leaf to root.
    {"objectName": "pfx-cert", "objectType": "secret", "objectAlias": "tls/pfx.pem"},
    # The same as a binary PFX.
    {
        "objectName": "pfx-cert",
        "objectType": "secret",
        "objectFormat": "pfx",
        "objectEncoding": "base64",
        "objectAlias": "tls/pfx.pfx",
        "filePermission": "0440",
    },
    {"objectName": "pfx-cert", "objectType": "cert", "objectAlias": "tls/leaf.pem"},
    {"objectName": "app-secret-1", "objectType": "secret", "objectVersionHistory": "3"},
)


def test_version_names_the_api_and_this_provider(provider: ProviderDaemon) -> None:
    _, client = provider
    answer = client.version()
    assert answer.version == "v1alpha1"
    assert answer.runtime_name == "kv-driver"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", answer.runtime_version)


def test_the_socket_is_root_only(provider: ProviderDaemon) -> None:
    _, client = provider
    info = client.socket.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_mount_answers_the_bytes_of_a_csi_volume_for_the_same_objects(
    provider: ProviderDaemon, devstack: Devstack
) -> None:
    daemon, client = provider
    params = parameters(devstack, *EVERY_KIND)

    # Our own CSI volume for the same objects, the same pod, the same identity.
    target = daemon.target("same-objects")
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
    assert answer_files(answer) == on_disk  # paths, modes and bytes
    assert sorted(on_disk) == [
        "app-secret-1/0",
        "cert1",
        "certs/ec.pem",
        "key1",
        "keys/ec.pem",
        "secret1",
        "tls/cert1.pem",
        "tls/leaf.pem",
        "tls/pfx.pem",
        "tls/pfx.pfx",
    ]
    assert on_disk["secret1"] == (0o600, world.SECRET_VALUE.encode())
    assert on_disk["tls/pfx.pfx"][0] == 0o440

    # provider-azure's object ids: <type>/<name>, and /<index> for each version of a history.
    versions = answer_versions(answer)
    assert set(versions) == {
        "secret/secret1",
        "key/key1",
        "key/ec-key",
        "cert/cert1",
        "cert/ec-cert",
        "secret/cert1",
        "secret/pfx-cert",
        "cert/pfx-cert",
        "secret/app-secret-1/0",
    }
    assert all(VERSION.fullmatch(v) for v in versions.values()), versions
    # The secret behind a certificate has the certificate's version.
    assert versions["secret/pfx-cert"] == versions["cert/pfx-cert"]


def test_every_answer_reaches_the_driver_intact_as_a_file_it_may_write(
    provider: ProviderDaemon, devstack: Devstack
) -> None:
    """What the driver's atomic writer requires of each path, and mode bits only."""
    _, client = provider
    answer = client.mount(mount_request(spc_attributes(parameters(devstack, *EVERY_KIND))))
    for file in answer.files:
        assert file.path and not file.path.startswith(("/", ".."))
        assert ".." not in Path(file.path).parts
        assert 0 <= file.mode <= 0o777


def test_the_request_permission_is_the_default_mode_and_history_of_one_is_a_plain_file(
    provider: ProviderDaemon, devstack: Devstack
) -> None:
    """As provider-azure: objects without filePermission take the driver's `permission`, and
    `objectVersionHistory: 1` is one plain file with the plain id."""
    _, client = provider
    params = parameters(
        devstack,
        {"objectName": "secret1", "objectType": "secret", "objectVersionHistory": "1"},
        {"objectName": "key1", "objectType": "key", "filePermission": "0640"},
    )
    answer = client.mount(mount_request(spc_attributes(params), permission=0o600))
    files = answer_files(answer)
    assert files["secret1"] == (0o600, world.SECRET_VALUE.encode())
    assert files["key1"][0] == 0o640
    assert set(answer_versions(answer)) == {"secret/secret1", "key/key1"}


def test_a_new_version_is_in_the_next_mount(provider: ProviderDaemon, devstack: Devstack) -> None:
    """The secrets-store driver rotates by calling Mount again: it gets the new bytes."""
    _, client = provider
    devstack.set_secret(world.VAULT, "provider-rotating", "first")
    request = mount_request(
        spc_attributes(
            parameters(devstack, {"objectName": "provider-rotating", "objectType": "secret"})
        )
    )
    first = client.mount(request)
    new_version = devstack.set_secret(world.VAULT, "provider-rotating", "second")
    second = client.mount(request)
    assert answer_files(first)["provider-rotating"][1] == b"first"
    assert answer_files(second)["provider-rotating"] == (0o644, b"second")
    assert answer_versions(second)["secret/provider-rotating"] == new_version
    assert new_version != answer_versions(first)["secret/provider-rotating"]


def test_service_principal_and_workload_identity_as_provider_azure_takes_them(
    provider: ProviderDaemon, devstack: Devstack
) -> None:
    daemon, client = provider
    objects = {"objects": objects_yaml({"objectName": "secret1", "objectType": "secret"})}
    base = {"keyvaultName": world.VAULT, "tenantId": world.TENANT, **objects}

    # nodePublishSecretRef data arrive as `secrets`.
    client_secret = devstack.client_secret("kvcreds")
    creds = {"clientid": devstack.client_id("kvcreds"), "clientsecret": client_secret}
    answer = client.mount(mount_request(spc_attributes(base), secrets=creds))
    assert answer_files(answer)["secret1"][1] == world.SECRET_VALUE.encode()

    # Workload identity: the token kubelet requested for the driver, inside `attributes`.
    sa_token = devstack.sa_token(world.NAMESPACE, world.WORKLOAD_SA)
    tokens = json.dumps(
        {
            "api://AzureADTokenExchange": {
                "token": sa_token,
                "expirationTimestamp": "2099-01-01T00:00:00Z",
            }
        }
    )
    wi = spc_attributes(
        {**base, "clientID": devstack.client_id(world.WORKLOAD_IDENTITY)},
        service_account=world.WORKLOAD_SA,
        tokens=tokens,
    )
    answer = client.mount(mount_request(wi))
    assert answer_files(answer)["secret1"][1] == world.SECRET_VALUE.encode()

    # A wrong client secret is refused, never served what the right one fetched.
    wrong = {**creds, "clientsecret": "not-the-secret"}
    code, _ = status_of(client.stub.Mount, mount_request(spc_attributes(base), secrets=wrong))
    assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)

    log = daemon.log()
    for value in (client_secret, sa_token, world.SECRET_VALUE, "not-the-secret"):
        assert value not in log


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        ({"keyvaultName": None}, grpc.StatusCode.INVALID_ARGUMENT, "keyvaultname"),
        ({"objects": "array: [oops"}, grpc.StatusCode.INVALID_ARGUMENT, "objects"),
        (
            {"objects": objects_yaml({"objectName": "no-such-secret", "objectType": "secret"})},
            grpc.StatusCode.NOT_FOUND,
            "no-such-secret",
        ),
    ],
    ids=["no-vault", "bad-yaml", "missing-object"],
)
def test_failures_carry_a_code_kubelet_understands(
    provider: ProviderDaemon,
    devstack: Devstack,
    change: dict[str, str | None],
    code: grpc.StatusCode,
    says: str,
) -> None:
    _, client = provider
    params: dict[str, str] = parameters(devstack, {"objectName": "secret1", "objectType": "secret"})
    for key, value in change.items():
        if value is None:
            del params[key]
        else:
            params[key] = value
    got, details = status_of(client.stub.Mount, mount_request(spc_attributes(params)))
    assert got == code
    assert says in details.lower()


def test_malformed_json_is_invalid_argument_and_not_echoed(provider: ProviderDaemon) -> None:
    _, client = provider
    request = mount_request({})
    request.attributes = '{"keyvaultName": "testkv", "token": "sekrit-token-value"'
    got, details = status_of(client.stub.Mount, request)
    assert got == grpc.StatusCode.INVALID_ARGUMENT
    assert "attributes is not valid JSON" in details
    assert "sekrit" not in details

    request = mount_request({})
    request.permission = "rw-r--r--"
    got, details = status_of(client.stub.Mount, request)
    assert got == grpc.StatusCode.INVALID_ARGUMENT
    assert "permission" in details


def test_mounts_of_the_same_objects_as_the_same_identity_share_one_fetch(
    start_provider: StartProvider, devstack: Devstack
) -> None:
    """Eight pods' worth of Mounts at once, as one identity: one Key Vault read; a pod of another
    identity is never handed that answer."""
    daemon, client = start_provider("--provider-fresh-for", "1h")
    name = "provider-shared"
    devstack.set_secret(world.VAULT, name, "shared-value")
    sp = {
        "clientid": devstack.client_id("kvcreds"),
        "clientsecret": devstack.client_secret("kvcreds"),
    }
    params = {
        "keyvaultName": world.VAULT,
        "tenantId": world.TENANT,
        "objects": objects_yaml({"objectName": name, "objectType": "secret"}),
    }
    before = devstack.count(world.VAULT, status=200)
    answers: list[bytes] = []

    def one(i: int) -> None:
        request = mount_request(spc_attributes(params, pod=f"web-{i}", uid=f"uid-{i}"), secrets=sp)
        answers.append(answer_files(client.mount(request))[name][1])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [b"shared-value"] * 8
    assert devstack.count(world.VAULT, status=200) - before == 1
    assert "kv_driver_provider_mounts_shared_total 7.0" in daemon.metrics()

    # Another identity (a pod NMI has no access for) asks for the same objects: refused.
    other = parameters(devstack, {"objectName": name, "objectType": "secret"})
    got, _ = status_of(
        client.stub.Mount,
        mount_request(spc_attributes(other, pod=world.NO_ACCESS_POD, uid="uid-no-access")),
    )
    assert got == grpc.StatusCode.PERMISSION_DENIED


def test_health_says_when_the_provider_socket_is_gone(provider: ProviderDaemon) -> None:
    """The DaemonSet's liveness probe restarts a provider whose socket was removed (the
    secrets-store driver could no longer reach it)."""
    daemon, client = provider
    url = f"http://127.0.0.1:{daemon.metrics_port}/healthz"
    assert requests.get(url, timeout=10).status_code == 200
    client.socket.unlink()
    answer = requests.get(url, timeout=10)
    assert (answer.status_code, answer.text) == (503, "not ready\n")


def test_the_provider_socket_goes_away_with_the_daemon(
    start_provider: StartProvider,
) -> None:
    daemon, client = start_provider()
    assert client.socket.exists()
    assert daemon.stop() == 0
    assert not client.socket.exists()


def test_csi_volumes_still_work_beside_the_provider(provider: ProviderDaemon) -> None:
    daemon, _ = provider
    target = daemon.target("beside")
    volume_id = new_volume_id()
    daemon.publish(volume_id, target, daemon.pod_attributes())
    assert (target / "secret1").read_text() == world.SECRET_VALUE
    daemon.node.NodeUnpublishVolume(unpublish_request(volume_id, target), timeout=30)
