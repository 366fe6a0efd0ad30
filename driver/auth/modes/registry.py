"""The identity modes, one module each. Order matters: it is the order in which messages list
the modes ("more than one identity mode is chosen", "no identity mode is chosen")."""

from __future__ import annotations

from collections.abc import Mapping

from driver.auth.modes.base import IdentityModeModule
from driver.auth.modes.pod_identity import POD_IDENTITY
from driver.auth.modes.service_principal import SERVICE_PRINCIPAL
from driver.auth.modes.vm_managed_identity import VM_MANAGED_IDENTITY
from driver.auth.modes.workload_identity import WORKLOAD_IDENTITY
from driver.model import IdentityMode

MODES: tuple[IdentityModeModule, ...] = (
    POD_IDENTITY,
    VM_MANAGED_IDENTITY,
    WORKLOAD_IDENTITY,
    SERVICE_PRINCIPAL,
)
BY_MODE: Mapping[IdentityMode, IdentityModeModule] = {m.mode: m for m in MODES}


def module_for(mode: IdentityMode) -> IdentityModeModule:
    """The module of `mode` (every `IdentityMode` has exactly one)."""
    return BY_MODE[mode]
