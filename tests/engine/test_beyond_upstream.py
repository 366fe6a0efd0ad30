"""What no upstream driver does (issue 15 items 1-4; issue 14 items 15 and 19), through the real
engine against the devstack: optional objects, several vaults per volume, selection by pattern
or tags, split certificates, per-volume AzureStack clouds, and the per-vault request budget."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from azcommon.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from devstack.harness import world


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def objects_yaml(*entries: dict[str, str]) -> str:
    lines = ["array:"]
    for entry in entries:
        lines.append("  - |")
        lines.extend(f"    {k}: {json.dumps(v)}" for k, v in entry.items())
    return "\n".join(lines) + "\n"


def yaml_attrs(*entries: dict[str, str]) -> dict[str, str | None]:
    return {
        "keyvaultobjectnames": None,
        "keyvaultobjecttypes": None,
        "objects": objects_yaml(*entries),
    }


def listing(target: Path) -> list[str]:
    """The volume's files as a pod sees them (top-level entries link into `..data`)."""
    found = []
    for root, dirs, files in os.walk(target, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        rel = Path(root).relative_to(target)
        found += [str(rel / f) for f in files if not f.startswith("..")]
    return sorted(found)


@pytest.fixture(scope="module", autouse=True)
def other_vault_readable(devstack: Any) -> None:
    # The seed pod's identity may read otherkv too (the seed grants it testkv only).
    devstack.set_policy(world.OTHER_VAULT, "pod-identity", secrets=["get", "list"])


# -- 1. optional objects -----------------------------------------------------------------------


def test_missing_optional_object_is_skipped_then_appears_and_disappears(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core()
    name = unique("opt")
    req = pod_request(
        yaml_attrs(
            {"objectName": "secret1", "objectType": "secret"},
            {"objectName": name, "objectType": "secret", "optional": "true"},
        )
    )
    result = core.engine.publish(req)
    t = req.target_path
    assert listing(t) == ["secret1"]
    assert name not in result.versions
    assert core.metrics.optional_missing.labels("testkv")._value.get() >= 1

    devstack.set_secret("testkv", name, "now-here")
    report = core.rotator.cycle()
    assert report.rotated == [req.volume_id]
    assert (t / name).read_bytes() == b"now-here"
    assert (t / "secret1").read_bytes() == b"testkv-secret1-value"

    devstack.delete_secret("testkv", name)
    report = core.rotator.cycle()
    assert report.rotated == [req.volume_id] and not report.failures
    assert listing(t) == ["secret1"]
    assert core.rotator.cycle().rotated == []  # still gone: nothing to swap


def test_disabled_optional_object_is_skipped_in_the_flexvolume_lists(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core()
    name = unique("optdis")
    version = devstack.set_secret("testkv", name, "off")
    devstack.set_secret_enabled("testkv", name, version, False)
    req = pod_request(
        {
            "keyvaultobjectnames": f"secret1;{name}",
            "keyvaultobjecttypes": "secret;secret",
            "keyvaultobjectoptional": ";true",
        }
    )
    core.engine.publish(req)
    assert listing(req.target_path) == ["secret1"]


def test_a_missing_object_that_is_not_optional_still_fails(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request(
        {"keyvaultobjectnames": f"secret1;{unique('nope')}", "keyvaultobjecttypes": "secret;secret"}
    )
    with pytest.raises(NotFound):
        core.engine.publish(req)
    assert not req.target_path.exists() or listing(req.target_path) == []


def test_optional_does_not_hide_other_errors(make_core, pod_request) -> None:
    core = make_core()
    # otherkv grants this identity secrets only: a key there is a 403, not a missing object.
    req = pod_request(
        yaml_attrs(
            {"objectName": "secret1", "objectType": "secret"},
            {
                "objectName": "key1",
                "objectType": "key",
                "optional": "true",
                "keyvaultName": world.OTHER_VAULT,
            },
        )
    )
    with pytest.raises(PermissionDenied):
        core.engine.publish(req)


# -- 2. several vaults per volume ----------------------------------------------------------------


def test_one_volume_reads_objects_from_two_vaults(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    req = pod_request(
        yaml_attrs(
            {"objectName": "secret1", "objectType": "secret"},
            {
                "objectName": "secret1",
                "objectType": "secret",
                "keyvaultName": world.OTHER_VAULT,
                "objectAlias": "other/secret1",
            },
        )
    )
    devstack.reset_counters()
    core.engine.publish(req)
    t = req.target_path
    assert (t / "secret1").read_bytes() == b"testkv-secret1-value"
    assert (t / "other" / "secret1").read_bytes() == b"otherkv-secret1-value"
    assert devstack.count(vault="otherkv", operation="secret.get", status=200) == 1
    # Rotation checks each vault's object once.
    devstack.reset_counters()
    report = core.rotator.cycle()
    assert report.checks == 2 and not report.failures
    assert devstack.count(vault="otherkv", operation="secret.get", status=200) == 1
    assert devstack.count(vault="testkv", operation="secret.get", status=200) == 1


def test_flexvolume_lists_name_a_vault_per_object(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request(
        {
            "keyvaultobjectnames": "secret1;secret1",
            "keyvaultobjecttypes": "secret;secret",
            "keyvaultobjectaliases": "mine;theirs",
            "keyvaultobjectvaults": f";{world.OTHER_VAULT}",
        }
    )
    core.engine.publish(req)
    assert (req.target_path / "mine").read_bytes() == b"testkv-secret1-value"
    assert (req.target_path / "theirs").read_bytes() == b"otherkv-secret1-value"


# -- 3. selection by pattern or tags -------------------------------------------------------------


def test_pattern_selects_matches_and_follows_them_at_rotation(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core()
    prefix = unique("sel")
    for i in (1, 2):
        devstack.set_secret("testkv", f"{prefix}-{i}", f"value-{i}")
    devstack.set_secret("testkv", f"x{prefix}-9", "not-matched")
    req = pod_request(
        yaml_attrs(
            {"objectNamePattern": f"{prefix}-*", "objectType": "secret", "objectAlias": "app"}
        )
    )
    core.engine.publish(req)
    t = req.target_path
    assert listing(t) == [f"app/{prefix}-1", f"app/{prefix}-2"]
    assert (t / "app" / f"{prefix}-2").read_bytes() == b"value-2"

    devstack.set_secret("testkv", f"{prefix}-3", "value-3")  # a new match
    devstack.delete_secret("testkv", f"{prefix}-1")  # a match removed
    devstack.set_secret("testkv", f"{prefix}-2", "value-2b")  # a new version
    report = core.rotator.cycle()
    assert report.rotated == [req.volume_id] and not report.failures
    assert listing(t) == [f"app/{prefix}-2", f"app/{prefix}-3"]
    assert (t / "app" / f"{prefix}-2").read_bytes() == b"value-2b"
    assert (t / "app" / f"{prefix}-3").read_bytes() == b"value-3"


def test_tags_select_and_the_bound_fails_clearly(make_core, pod_request, devstack: Any) -> None:
    core = make_core()
    team = unique("team")
    for i in range(3):
        devstack.set_secret("testkv", unique("tagged"), f"t{i}", tags={"team": team})
    devstack.set_secret("testkv", unique("tagged"), "other", tags={"team": "nobody"})
    req = pod_request(yaml_attrs({"objectTags": f"team={team}", "objectType": "secret"}))
    core.engine.publish(req)
    assert sorted(p.read_text() for p in req.target_path.iterdir() if p.is_file()) == [
        "t0",
        "t1",
        "t2",
    ]
    bounded = pod_request(
        yaml_attrs({"objectTags": f"team={team}", "objectType": "secret", "maxMatches": "2"})
    )
    with pytest.raises(FailedPrecondition, match="matches 3 objects, more than its bound of 2"):
        core.engine.publish(bounded)


def test_flexvolume_name_glob_selects(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request({"keyvaultobjectnames": "app-secret-*", "keyvaultobjecttypes": "secret"})
    core.engine.publish(req)
    assert listing(req.target_path) == ["app-secret-1", "app-secret-2", "app-secret-3"]


def test_a_cycle_lists_each_selection_once_whatever_the_volumes(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core()
    prefix = unique("many")
    for i in range(3):
        devstack.set_secret("testkv", f"{prefix}-{i}", f"v{i}")
    attrs = yaml_attrs({"objectNamePattern": f"{prefix}-*", "objectType": "secret"})
    for _ in range(4):
        core.engine.publish(pod_request(attrs))
    devstack.reset_counters()
    report = core.rotator.cycle()
    assert report.lists == 1 and report.lists_saved == 3
    cycle_lists = devstack.count(vault="testkv", operation="secret.list", status=200)
    assert devstack.count(vault="testkv", operation="secret.get", status=200) == 3
    # What one listing of the vault costs (its pages, 25 names each): the cycle paid it once.
    record = core.ledger.all()[0]
    access, _ = core.resolver.access_recorded(record, core.ledger.auth_of(record))
    devstack.reset_counters()
    core.resolver.listing(access, record.spec.objects[0])
    assert cycle_lists == devstack.count(vault="testkv", operation="secret.list", status=200)


def test_a_selection_that_collides_with_a_named_object_is_refused(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request(
        yaml_attrs(
            {"objectName": "app-secret-1", "objectType": "secret"},
            {"objectNamePattern": "app-secret-*", "objectType": "secret"},
        )
    )
    with pytest.raises(FailedPrecondition, match="would write the file"):
        core.engine.publish(req)


# -- 4. split certificates -----------------------------------------------------------------------


def test_certificate_split_into_key_leaf_chain_and_bundle_with_modes(
    make_core, pod_request
) -> None:
    core = make_core()
    req = pod_request(
        yaml_attrs(
            {
                "objectName": "pfx-cert",
                "objectType": "secret",
                "objectAlias": "tls/server",
                "certParts": "key:0600,crt,chain:0444,bundle",
                "filePermission": "0640",
            }
        )
    )
    core.engine.publish(req)
    base = req.target_path / "tls"
    assert listing(base) == ["server.bundle", "server.chain", "server.crt", "server.key"]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in base.iterdir()}
    assert modes == {
        "server.key": 0o600,
        "server.crt": 0o640,
        "server.chain": 0o444,
        "server.bundle": 0o640,
    }
    key = serialization.load_pem_private_key((base / "server.key").read_bytes(), None)
    leaf = x509.load_pem_x509_certificate((base / "server.crt").read_bytes())
    chain = x509.load_pem_x509_certificates((base / "server.chain").read_bytes())
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.rfc4514_string() == "CN=pfx-cert"
    # intermediate then root
    assert len(chain) == 2 and chain[0].subject == leaf.issuer
    assert chain[1].subject == chain[1].issuer and chain[1].subject == chain[0].issuer
    bundle = (base / "server.bundle").read_bytes()
    assert (
        bundle.startswith(b"-----BEGIN PRIVATE KEY-----") and bundle.count(b"CERTIFICATE-----") == 6
    )


def test_cert_parts_of_a_plain_secret_fail_naming_the_object(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request(
        yaml_attrs({"objectName": "secret1", "objectType": "secret", "certParts": "key"})
    )
    with pytest.raises(InvalidArgument, match="certParts needs a secret that backs a certificate"):
        core.engine.publish(req)


# -- issue 14 item 15: custom clouds per volume ----------------------------------------------------


def stack_env_file(path: Path, devstack: Any) -> Path:
    cloud = json.loads(Path(devstack.cloud_config).read_text())
    path.write_text(
        json.dumps(
            {
                "name": "AzureStackCloud",
                "activeDirectoryEndpoint": cloud["authority_host"] + "/",
                "keyVaultDNSSuffix": "vault.local.azurestack.external",
                "resourceIdentifiers": {"keyVault": cloud["keyvault_resource"]},
                "vault_urls": cloud["vault_urls"],
            }
        )
    )
    return path


def test_azure_stack_cloud_from_an_environment_file_per_volume(
    make_core, pod_request, devstack: Any, tmp_path: Path
) -> None:
    core = make_core()
    env = stack_env_file(tmp_path / "azurestack.json", devstack)
    req = pod_request({"cloudName": "AzureStackCloud", "cloudEnvFileName": str(env)})
    core.engine.publish(req)
    assert (req.target_path / "secret1").read_bytes() == b"testkv-secret1-value"
    # Another volume with a broken file of its own fails alone; nothing process-wide changed.
    bad = tmp_path / "broken.json"
    bad.write_text("{}")
    with pytest.raises(InvalidArgument, match="activeDirectoryEndpoint"):
        core.engine.publish(
            pod_request({"cloudName": "AzureStackCloud", "cloudEnvFileName": str(bad)})
        )
    core.engine.publish(pod_request())  # the daemon's own cloud, unaffected


def test_azure_stack_cloud_needs_its_file(make_core, pod_request) -> None:
    core = make_core()
    with pytest.raises(InvalidArgument, match="needs cloudEnvFileName"):
        core.engine.publish(pod_request({"cloudName": "AzureStackCloud"}))


# -- issue 14 item 19: the per-vault request budget ----------------------------------------------


def test_requests_past_the_vault_budget_wait_their_turn_instead_of_a_429(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core(keyvault_rate_limit=2, keyvault_rate_window=0.5)
    req = pod_request(
        {
            "keyvaultobjectnames": "app-secret-1;app-secret-2;app-secret-3;secret1",
            "keyvaultobjecttypes": "secret;secret;secret;secret",
        }
    )
    devstack.reset_counters()
    core.engine.publish(req)
    assert len(listing(req.target_path)) == 4
    assert core.metrics.rate_limited.labels("testkv")._value.get() >= 2
    assert devstack.count(vault="testkv", status=429) == 0


def test_an_environment_file_others_can_write_is_refused(
    make_core, pod_request, devstack: Any, tmp_path: Path
) -> None:
    core = make_core()
    env = stack_env_file(tmp_path / "writable.json", devstack)
    env.chmod(0o666)
    with pytest.raises(InvalidArgument, match="not writable by group or others"):
        core.engine.publish(
            pod_request({"cloudName": "AzureStackCloud", "cloudEnvFileName": str(env)})
        )
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        core.engine.publish(
            pod_request({"cloudName": "AzureStackCloud", "cloudEnvFileName": str(fifo)})
        )
