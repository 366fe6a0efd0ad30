"""Shared fixtures. The suite runs inside a private mount namespace (`make test` uses
`unshare -m` when root), so real tmpfs mounts never leak to the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.harness.node import default_mount_mode
from devstack.harness.world import REPO

pytest_plugins = ["tests.fixtures.devstack", "tests.fixtures.daemon"]


@pytest.fixture(scope="session")
def mount_mode() -> str:
    """The mount mode tests can use: "tmpfs" when real mounts are safe here, else "dir"."""
    return default_mount_mode()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
