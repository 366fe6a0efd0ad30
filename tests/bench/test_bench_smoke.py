"""The benchmark runner works end to end on a tiny configuration (timings are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_quick_run_prints_a_table_and_writes_json(tmp_path: Path, repo_root: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "engine_publish",
            "--out",
            str(tmp_path),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    rows = [line for line in proc.stdout.splitlines() if line.startswith("| engine publish")]
    assert rows, proc.stdout
    assert "| figure | value | baseline | ratio | target | pass |" in proc.stdout

    result = json.loads((tmp_path / "results.json").read_text())
    assert result["quick"] is True
    assert result["errors"] == {}
    assert len(result["rows"]) == len(rows)
    for row in result["rows"]:
        assert row["benchmark"] == "engine_publish"
        assert isinstance(row["value"], (int, float))
        assert row["pass"] in (True, False, None)
    assert (tmp_path / "results.md").read_text().count("| engine publish") == len(rows)
