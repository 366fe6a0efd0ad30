"""Fixtures for the provider front door: daemons serving the secrets-store provider socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devstack.client import Devstack
from devstack.harness.daemon import DaemonProcess, Reaper
from devstack.harness.provider import ProviderClient

ProviderDaemon = tuple[DaemonProcess, ProviderClient]
StartProvider = Callable[..., ProviderDaemon]


@pytest.fixture
def start_provider(
    tmp_path_factory: pytest.TempPathFactory,
    devstack: Devstack,
    mount_mode: str,
    daemon_reaper: Reaper,
) -> Iterator[StartProvider]:
    """A factory of daemons that serve the provider API at <root>/providers/azure.sock, where
    the secrets-store driver looks for provider "azure"; extra daemon flags as arguments."""
    started: list[tuple[DaemonProcess, ProviderClient]] = []

    def start(*args: str) -> ProviderDaemon:
        root = tmp_path_factory.mktemp("provider")
        socket = root / "providers" / "azure.sock"
        daemon = DaemonProcess(
            root,
            devstack,
            mount_mode,
            ["--provider-socket", str(socket), "--log-level", "debug", *args],
        ).start()
        client = ProviderClient(socket)
        started.append((daemon, client))
        client.wait_ready()
        return daemon, client

    yield start
    for daemon, client in started:
        client.close()
        daemon_reaper.stop(daemon)


@pytest.fixture
def provider(start_provider: StartProvider) -> ProviderDaemon:
    """A daemon whose provider answers are never reused (each Mount asks Key Vault)."""
    return start_provider("--provider-fresh-for", "0")
