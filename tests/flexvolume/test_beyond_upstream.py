"""Through the real azure/kv shim (kubelet's argv and options JSON): the FlexVolume lists'
equivalents of the new options — `keyvaultobjectoptional`, `keyvaultobjectvaults`, a name glob
in `keyvaultobjectnames` that selects every matching object, and `keyvaultobjecttags`."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from devstack.client import Devstack
from devstack.harness import world
from tests.fixtures.daemon import StartDaemon
from tests.flexvolume.e2e_support import flex_mount


def files(target: Path) -> list[str]:
    found = []
    for root, dirs, names in os.walk(target, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        rel = Path(root).relative_to(target)
        found += [str(rel / n) for n in names if not n.startswith("..")]
    return sorted(found)


def test_flexvolume_lists_take_optional_vault_and_glob_entries(
    start_daemon: StartDaemon, devstack: Devstack
) -> None:
    devstack.set_policy(world.OTHER_VAULT, "pod-identity", secrets=["get", "list"])
    daemon = start_daemon()
    missing = f"flexopt-{uuid.uuid4().hex[:6]}"
    team = f"team-{uuid.uuid4().hex[:6]}"
    for name in ("flextag-a", "flextag-b"):
        devstack.set_secret("testkv", f"{name}-{team}", name, tags={"team": team})
    target = flex_mount(
        daemon,
        {
            "keyvaultobjectnames": f"secret1;secret1;{missing};app-secret-*;*",
            "keyvaultobjecttypes": "secret;secret;secret;secret;secret",
            "keyvaultobjectaliases": "mine;theirs;maybe;apps;team",
            "keyvaultobjectvaults": f";{world.OTHER_VAULT};;;",
            "keyvaultobjectoptional": ";;true;;",
            "keyvaultobjecttags": f";;;;team={team}",
        },
    )
    assert files(target) == [
        "apps/app-secret-1",
        "apps/app-secret-2",
        "apps/app-secret-3",
        "mine",
        f"team/flextag-a-{team}",
        f"team/flextag-b-{team}",
        "theirs",
    ]
    # FlexVolume writes secrets exactly as stored, as upstream did.
    assert (target / "theirs").read_bytes() == b"otherkv-secret1-value"
    assert (target / "apps" / "app-secret-2").read_bytes() == b"app-secret-2-value"
