"""Helpers shared by the beyond-upstream engine tests: unique names, objects YAML, and the
volume's files as a pod sees them."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


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
