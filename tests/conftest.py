"""Shared fixtures. The suite runs inside a private mount namespace (`make test` uses
`unshare -m` when root), so real tmpfs mounts never leak to the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.devstack", "tests.fixtures.daemon"]


def in_private_mount_namespace() -> bool:
    try:
        return os.geteuid() == 0 and os.readlink("/proc/self/ns/mnt") != os.readlink(
            "/proc/1/ns/mnt"
        )
    except OSError:
        return False


@pytest.fixture(scope="session")
def mount_mode() -> str:
    """"tmpfs" when real mounts are safe here, else "dir" (plain directories)."""
    return "tmpfs" if in_private_mount_namespace() else "dir"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
