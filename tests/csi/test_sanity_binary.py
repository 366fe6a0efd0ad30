"""The real csi-sanity binary (kubernetes-csi/csi-test v5.5.0), Identity and Node suites, against
the running daemon: 0 failures, and exactly the skipped cases the README lists, for the reasons
it gives.

csi-sanity is found like the cluster's binaries (`KV_K8S_BIN_DIR`, then PATH, then
`../shared/k8s`); without it this test is skipped, except under `CI=true`, where it must run.
`test_sanity.py` replays the same cases in Python, including the one skipped here.
"""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from devstack.cluster.binaries import BinaryNotFound, kube_binary
from tests.fixtures.daemon import DaemonProcess

# Each case csi-sanity does not run for this plugin, with the reason (the README's table).
SKIPPED = {
    "Node Service NodeUnpublishVolume should remove target path": (
        "deselected with --ginkgo.skip: it gets its volume from Controller CreateVolume, and "
        "this node-only plugin has no controller (replayed in test_sanity.py instead)"
    ),
    "Node Service NodePublishVolume with single node multi writer capability should fail when "
    "volume with single node single writer access mode is already mounted at a different target "
    "path": (
        "no SINGLE_NODE_MULTI_WRITER capability"
    ),
    "Node Service NodeStageVolume should fail when no volume id is provided": "no STAGE_UNSTAGE_VOLUME",
    "Node Service NodeStageVolume should fail when no staging target path is provided": "no STAGE_UNSTAGE_VOLUME",
    "Node Service NodeStageVolume should fail when no volume capability is provided": "no STAGE_UNSTAGE_VOLUME",
    "Node Service NodeUnstageVolume should fail when no volume id is provided": "no STAGE_UNSTAGE_VOLUME",
    "Node Service NodeUnstageVolume should fail when no staging target path is provided": "no STAGE_UNSTAGE_VOLUME",
    "Node Service NodeGetVolumeStats should fail when no volume id is provided": "no GET_VOLUME_STATS",
    "Node Service NodeGetVolumeStats should fail when no volume path is provided": "no GET_VOLUME_STATS",
    "Node Service NodeGetVolumeStats should fail when volume is not found": "no GET_VOLUME_STATS",
    "Node Service NodeGetVolumeStats should fail when volume does not exist on the specified path": "no GET_VOLUME_STATS",
    "Node Service NodeExpandVolume should fail when no volume id is provided": "no EXPAND_VOLUME",
    "Node Service NodeExpandVolume should fail when no volume path is provided": "no EXPAND_VOLUME",
    "Node Service NodeExpandVolume should fail when volume is not found": "no EXPAND_VOLUME",
    "Node Service NodeExpandVolume should work if node-expand is called after node-publish": "no EXPAND_VOLUME",
    "Node Service should work": "needs Controller CreateVolume (no CONTROLLER_SERVICE)",
    "Node Service should be idempotent": "needs Controller CreateVolume (no CONTROLLER_SERVICE)",
}  # fmt: skip


@pytest.fixture(scope="module")
def csi_sanity() -> Path:
    try:
        return kube_binary("csi-sanity")
    except BinaryNotFound as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and csi-sanity is missing: {exc}")
        pytest.skip(str(exc))


def _cases(junit: Path) -> dict[str, str]:
    """Case name -> "passed" | "skipped" | "failed" for the Identity and Node suites."""
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = re.sub(r"^\[It\] ", "", case.attrib["name"]).strip()
        if not name.startswith(("Identity Service", "Node Service")):
            continue
        tags = {child.tag for child in case}
        outcomes[name] = (
            "failed"
            if tags & {"failure", "error"}
            else "skipped"
            if "skipped" in tags
            else "passed"
        )
    return outcomes


def test_csi_sanity_identity_and_node_suites_pass(
    csi_sanity: Path, tmp_path: Path, devstack: Any, mount_mode: str
) -> None:
    daemon = DaemonProcess(tmp_path / "plugin", devstack, mount_mode, []).start()
    junit = tmp_path / "junit.xml"
    try:
        result = subprocess.run(
            [
                str(csi_sanity),
                f"--csi.endpoint=unix://{daemon.csi_socket}",
                # Must not exist: csi-sanity creates them before each case and removes them after.
                f"--csi.mountdir={tmp_path / 'mnt'}",
                f"--csi.stagingdir={tmp_path / 'staging'}",
                "--ginkgo.focus=Identity Service|Node Service",
                "--ginkgo.skip=should remove target path",
                "--ginkgo.no-color",
                f"--ginkgo.junit-report={junit}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        daemon.stop()
    summary = [line for line in result.stdout.splitlines() if "Passed" in line and "Failed" in line]
    assert result.returncode == 0, (
        f"csi-sanity failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    outcomes = _cases(junit)
    failed = sorted(name for name, outcome in outcomes.items() if outcome == "failed")
    skipped = {name for name, outcome in outcomes.items() if outcome == "skipped"}
    passed = sorted(name for name, outcome in outcomes.items() if outcome == "passed")
    print(f"csi-sanity: {summary[-1] if summary else '?'} ; Identity+Node: {len(passed)} passed, "
          f"{len(failed)} failed, {len(skipped)} skipped")  # fmt: skip
    assert failed == []
    assert skipped == set(SKIPPED), "update SKIPPED and the README's Conformance table"
    assert len(passed) == 10
