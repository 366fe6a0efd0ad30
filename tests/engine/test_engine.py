"""publish/unpublish through the real engine, against the devstack over HTTPS."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from azcommon.errors import (
    Aborted,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from driver.mounts import mount_points


def read(target: Path, name: str) -> bytes:
    return (target / name).read_bytes()


def assert_nothing_left(target: Path) -> None:
    assert str(target) not in mount_points()
    assert not target.exists() or not any(target.iterdir())


def test_seed_pod_mounts_secret_key_and_cert(make_core, pod_request, mount_mode: str) -> None:
    core = make_core()
    req = pod_request(
        {"keyvaultobjectnames": "secret1;key1;cert1", "keyvaultobjecttypes": "secret;key;cert"}
    )
    result = core.engine.publish(req)
    target = req.target_path
    assert read(target, "secret1") == b"testkv-secret1-value"
    key = serialization.load_pem_public_key(read(target, "key1"))
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    cert = x509.load_pem_x509_certificate(read(target, "cert1"))
    assert cert.subject.rfc4514_string() == "CN=cert1"
    assert {f.path for f in result.files} == {"secret1", "key1", "cert1"}
    assert all((target / n).stat().st_mode & 0o777 == 0o644 for n in ("secret1", "key1", "cert1"))
    assert (target / "..data").is_symlink()
    assert result.fetched and all(len(v) == 1 and v[0] for v in result.versions.values())
    if mount_mode == "tmpfs":
        assert mount_points()[str(target)] == "tmpfs"


def test_unpublish_removes_everything_and_is_idempotent(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request()
    core.engine.publish(req)
    core.engine.unpublish(req.volume_id, req.target_path)
    assert not req.target_path.exists()
    assert core.ledger.at(req.target_path) is None
    core.engine.unpublish(req.volume_id, req.target_path)  # again: still fine


def test_republish_is_idempotent_and_asks_key_vault_nothing(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core()
    req = pod_request()
    core.engine.publish(req)
    before = devstack.count(vault="testkv")
    again = core.engine.publish(req)
    assert not again.fetched
    assert devstack.count(vault="testkv") == before
    assert read(req.target_path, "secret1") == b"testkv-secret1-value"


def test_identity_without_access_gets_permission_denied_and_no_files(
    make_core, pod_request
) -> None:
    core = make_core()
    req = pod_request({"csi.storage.k8s.io/pod.name": "no-access-pod"})
    with pytest.raises(PermissionDenied) as err:
        core.engine.publish(req)
    assert "secret 'secret1'" in str(err.value) and "403" in str(err.value)
    assert_nothing_left(req.target_path)
    assert core.ledger.at(req.target_path) is None


def test_one_missing_object_fails_the_whole_volume(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request(
        {"keyvaultobjectnames": "secret1;nope", "keyvaultobjecttypes": "secret;secret"}
    )
    with pytest.raises(NotFound) as err:
        core.engine.publish(req)
    assert "'nope'" in str(err.value) and "SecretNotFound" in str(err.value)
    assert_nothing_left(req.target_path)


def test_bad_attributes_fail_before_any_side_effect(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    devstack.reset_counters()
    req = pod_request({"keyvaultobjecttypes": "secret;key"})
    with pytest.raises(InvalidArgument):
        core.engine.publish(req)
    assert devstack.count() == 0
    assert_nothing_left(req.target_path)


def test_service_principal_from_csi_secrets(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    sp = devstack.identities["kvcreds"]
    req = pod_request(
        {"usePodIdentity": None},
        secrets={"clientid": sp["client_id"], "clientsecret": sp["client_secret"]},
    )
    core.engine.publish(req)
    assert read(req.target_path, "secret1") == b"testkv-secret1-value"


def test_wrong_client_secret_is_refused(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    sp = devstack.identities["kvcreds"]
    req = pod_request(
        {"usePodIdentity": None},
        secrets={"clientid": sp["client_id"], "clientsecret": "Zq7-not-the-secret"},
    )
    with pytest.raises(PermissionDenied) as err:
        core.engine.publish(req)
    assert "Zq7-not-the-secret" not in str(err.value)
    assert_nothing_left(req.target_path)


def test_vm_managed_identity_user_assigned(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    req = pod_request(
        {
            "usePodIdentity": None,
            "useVMManagedIdentity": "true",
            "userAssignedIdentityID": devstack.identities["vm-user"]["client_id"],
        }
    )
    core.engine.publish(req)
    assert read(req.target_path, "secret1") == b"testkv-secret1-value"


def test_workload_identity_with_service_account_token(
    make_core, pod_request, devstack: Any
) -> None:
    import json

    core = make_core()
    token = devstack.sa_token("default", "workload-sa")
    req = pod_request(
        {
            "usePodIdentity": None,
            "clientID": devstack.identities["workload"]["client_id"],
            "csi.storage.k8s.io/serviceAccount.name": "workload-sa",
            "csi.storage.k8s.io/serviceAccount.tokens": json.dumps(
                {"api://AzureADTokenExchange": {"token": token, "expirationTimestamp": ""}}
            ),
        }
    )
    core.engine.publish(req)
    assert read(req.target_path, "secret1") == b"testkv-secret1-value"


def test_provider_objects_with_modes_aliases_and_history(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core()
    for value in ("v1", "v2", "v3"):
        devstack.set_secret("testkv", "engine-history", value)
    objects = """
array:
  - |
    objectName: engine-history
    objectType: secret
    objectAlias: conf/history
    objectVersionHistory: 2
  - |
    objectName: secret1
    objectType: secret
    objectAlias: conf/tight
    filePermission: "0600"
    objectEncoding: utf-8
"""
    req = pod_request(
        {"keyvaultobjectnames": None, "keyvaultobjecttypes": None, "objects": objects}
    )
    core.engine.publish(req)
    t = req.target_path
    assert read(t, "conf/history/0") == b"v3"
    assert read(t, "conf/history/1") == b"v2"
    assert not (t / "conf/history/2").exists()  # exactly N (upstream wrote N+1)
    assert (t / "conf/tight").stat().st_mode & 0o777 == 0o600


def test_transient_503s_are_retried(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    # The next three Key Vault requests fail, whatever the order the fetches run in: each is
    # retried, and the volume mounts. (A random rate would make the test depend on the load.)
    devstack.reset_counters()
    devstack.fault(vault="testkv", endpoint="keyvault", rate_503=1.0, count=3)
    try:
        req = pod_request(
            {
                "keyvaultobjectnames": "app-secret-1;app-secret-2;app-secret-3",
                "keyvaultobjecttypes": "secret;secret;secret",
            }
        )
        core.engine.publish(req)
    finally:
        devstack.clear_faults()
    assert read(req.target_path, "app-secret-3") == b"app-secret-3-value"
    assert devstack.count(vault="testkv", status=503) == 3


def test_throttled_vault_gives_a_retriable_error_and_no_files(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core(request_timeout=0.5)
    devstack.fault(vault="testkv", endpoint="keyvault", rate_429=1.0, retry_after=1)
    try:
        req = pod_request()
        with pytest.raises(ResourceExhausted) as err:
            core.engine.publish(req)
    finally:
        devstack.clear_faults()
    assert not err.value.final
    assert_nothing_left(req.target_path)


def test_nmi_without_identity_is_unavailable_not_final(make_core, pod_request) -> None:
    core = make_core(nmi_deadline=0.5)
    req = pod_request({"csi.storage.k8s.io/pod.name": "pod-without-identity"})
    with pytest.raises(Unavailable) as err:
        core.engine.publish(req)
    assert not err.value.final
    assert_nothing_left(req.target_path)


def test_concurrent_operations_on_one_volume_are_aborted(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core()
    req = pod_request()
    devstack.fault(vault="testkv", endpoint="keyvault", latency_ms=400)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            core.engine.publish(req)
        except BaseException as exc:
            errors.append(exc)

    try:
        thread = threading.Thread(target=first)
        thread.start()
        # The first call holds the volume while Key Vault is slow; a second one is refused.
        for _ in range(200):
            try:
                with core.ledger.exclusive(req.volume_id, req.target_path):
                    pass
            except Aborted:
                break
            threading.Event().wait(0.005)
        else:
            pytest.fail("the first publish never held the volume")
        with pytest.raises(Aborted):
            core.engine.publish(req)
        thread.join()
    finally:
        devstack.clear_faults()
    assert not errors


def test_failed_first_publish_keeps_no_credentials(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    sp = devstack.identities["kvcreds"]
    for _ in range(3):
        req = pod_request(
            {
                "usePodIdentity": None,
                "keyvaultobjectnames": "nope",
                "keyvaultobjecttypes": "secret",
            },
            secrets={"clientid": sp["client_id"], "clientsecret": sp["client_secret"]},
        )
        with pytest.raises(NotFound):
            core.engine.publish(req)
        core.engine.unpublish(req.volume_id, req.target_path)
    assert len(core.credentials) == 0
    assert not (core.settings.state_dir / "auth").exists() or not any(
        (core.settings.state_dir / "auth").iterdir()
    )


def test_a_token_the_vault_rejects_is_replaced_once(make_core, pod_request, devstack: Any) -> None:
    """A cached token Key Vault no longer accepts (revoked, keys rolled) is dropped and fetched
    again, instead of failing every request until it would have expired."""
    from azure.core.credentials import AccessToken

    core = make_core()
    req = pod_request()
    core.engine.publish(req)
    record = core.ledger.at(req.target_path)
    access, _ = core.resolver.access_recorded(record, core.ledger.auth_of(record))
    real = access.credential

    class CachedBadToken:
        """The shape of our credentials: serves a stale token until invalidated."""

        invalidated = 0

        def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
            if not self.invalidated:
                return AccessToken("stale.token.value", int(time.time()) + 3600)
            return real.get_token(*scopes, **kw)

        def invalidate(self) -> None:
            self.invalidated += 1

    cred = CachedBadToken()
    devstack.reset_counters()
    stale = dataclasses.replace(access, credential=cred, identity_key="stale-key")
    got = core.resolver.latest(stale, record.spec.objects[0])
    assert got[0].value == "testkv-secret1-value"
    assert cred.invalidated == 1
    assert devstack.count(vault="testkv", status=401) >= 1


def test_a_volume_too_large_to_rotate_on_its_tmpfs_is_refused(
    make_core, pod_request, mount_mode: str
) -> None:
    if mount_mode != "tmpfs":
        pytest.skip("the size limit belongs to tmpfs mounts")
    core = make_core(tmpfs_size="8k")  # the three files take about 5 KiB
    req = pod_request(
        {"keyvaultobjectnames": "pfx-cert;cert1;key1", "keyvaultobjecttypes": "secret;cert;key"}
    )
    with pytest.raises(InvalidArgument) as err:
        core.engine.publish(req)
    assert "--tmpfs-size" in str(err.value)
    assert_nothing_left(req.target_path)
