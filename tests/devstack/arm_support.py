"""Helpers shared by the devstack ARM tests: identity ids and names as the compute SDK shows
them, a VM patch as MIC sends it, and the ARM error of a refused call."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from devstack.client import Devstack
from tests.devstack.conftest import ARM_RG, compute_client

OTHER_SUBSCRIPTION = "66666666-6666-6666-6666-666666666666"


def identity_ids(ds: Devstack, *names: str, remove: bool = False) -> dict[str, Any]:
    return {ds.resource_id(name): (None if remove else {}) for name in names}


def identity_names(ds: Devstack, identity: Any) -> set[str]:
    """The identity names of a resource's userAssignedIdentities (ids compared without case)."""
    if identity is None or not identity.user_assigned_identities:
        return set()
    by_id = {v["resource_id"].lower(): n for n, v in ds.identities.items() if "resource_id" in v}
    return {by_id[key.lower()] for key in identity.user_assigned_identities}


def patch_vm(ds: Devstack, name: str, identity: dict[str, Any], caller: str = "mic") -> Any:
    client = compute_client(ds, caller)
    return client.virtual_machines.begin_update(ARM_RG, name, {"identity": identity}).result()


def arm_error(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str, str]:
    error = exc.value.error
    assert error is not None
    return exc.value.status_code, str(error.code), str(error.message)
