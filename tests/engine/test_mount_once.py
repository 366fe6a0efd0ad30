"""`kv-csi-driver mount-once`: one publish from the command line, reporting no contents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devstack.harness.world import TENANT


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driver", "mount-once", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_mount_once_writes_files_and_prints_names_not_contents(
    devstack: Any, tmp_path: Path, mount_mode: str
) -> None:
    attributes = tmp_path / "attrs.yaml"
    attributes.write_text(
        yaml.safe_dump(
            {
                "keyvaultName": "testkv",
                "tenantId": TENANT,
                "keyvaultobjectnames": "secret1;key1",
                "keyvaultobjecttypes": "secret;key",
            }
        )
    )
    secrets = tmp_path / "secrets.yaml"
    sp = devstack.identities["kvcreds"]
    secrets.write_text(
        yaml.safe_dump({"clientid": sp["client_id"], "clientsecret": sp["client_secret"]})
    )
    target = tmp_path / "mnt"
    proc = run(
        [
            "--target", str(target),
            "--attributes", str(attributes),
            "--secrets", str(secrets),
            "--state-dir", str(tmp_path / "state"),
            "--mount-mode", mount_mode,
            "--cloud-config", devstack.cloud_config,
        ]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {f["path"] for f in report["files"]} == {"secret1", "key1"}
    assert all(len(v) == 1 for v in report["versions"].values())
    assert (target / "secret1").read_bytes() == b"testkv-secret1-value"
    assert "testkv-secret1-value" not in proc.stdout + proc.stderr
    assert sp["client_secret"] not in proc.stdout + proc.stderr


def test_mount_once_reports_bad_attributes(devstack: Any, tmp_path: Path) -> None:
    attributes = tmp_path / "attrs.json"
    attributes.write_text(json.dumps({"keyvaultName": "testkv", "tenantId": TENANT}))
    proc = run(
        [
            "--target", str(tmp_path / "mnt"),
            "--attributes", str(attributes),
            "--state-dir", str(tmp_path / "state"),
            "--mount-mode", "dir",
            "--cloud-config", devstack.cloud_config,
        ]
    )  # fmt: skip
    assert proc.returncode == 1
    error = json.loads(proc.stderr.strip().splitlines()[-1])
    assert error["error"] == "INVALID_ARGUMENT"
    assert not (tmp_path / "mnt").exists()
