"""Fixtures for the CSI tests: `csi`, one daemon shared by the modules of this package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.client import Devstack
from devstack.harness.daemon import DaemonProcess, Reaper


@pytest.fixture(scope="package")
def csi(
    tmp_path_factory: pytest.TempPathFactory,
    devstack: Devstack,
    mount_mode: str,
    daemon_reaper: Reaper,
) -> Iterator[DaemonProcess]:
    """One daemon shared by the tests that do not restart or signal it. Short deadlines keep the
    throttling and missing-identity cases quick; debug logging emits the request log lines."""
    daemon = DaemonProcess(
        tmp_path_factory.mktemp("csi"),
        devstack,
        mount_mode,
        ["--log-level", "debug", "--request-timeout", "1s", "--nmi-deadline", "1s"],
    )
    try:
        yield daemon.start()
    finally:
        daemon_reaper.stop(daemon)
