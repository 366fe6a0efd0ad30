"""The engine wired exactly as the daemon wires it, in this process, pointed at a devstack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devstack.client import Devstack
from driver.config import Settings


def core_settings(
    state_dir: Path,
    devstack: Devstack,
    mount_mode: str,
    *,
    deadline: float = 2.0,
    **overrides: Any,
) -> Settings:
    """Daemon settings for an in-process `build_core`: the devstack's cloud config, rotation out
    of the way (a long poll interval; callers run cycles themselves), and `deadline` seconds for
    NMI and each request."""
    values: dict[str, Any] = {
        "state_dir": state_dir,
        "mount_mode": mount_mode,
        "cloud_config": Path(devstack.cloud_config),
        "rotation_poll_interval": 120.0,
        "nmi_deadline": deadline,
        "request_timeout": deadline,
    }
    values.update(overrides)
    return Settings(**values)
