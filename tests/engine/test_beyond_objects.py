"""What no upstream driver does with the objects of a volume (issue 15 items 1-3), through the
real engine against the devstack: optional objects, several vaults per volume, and selection
by pattern or tags."""

from __future__ import annotations

from typing import Any

import pytest

from azcommon.errors import FailedPrecondition, NotFound, PermissionDenied
from devstack.harness import world
from tests.engine.beyond_support import listing, unique, yaml_attrs

# Every test here may read otherkv with the seed pod's identity.
pytestmark = pytest.mark.usefixtures("other_vault_readable")

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
