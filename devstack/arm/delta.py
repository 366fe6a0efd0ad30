"""What a PATCH body does to a VM's or scale set's identity block, as Azure applies it:

- `identity.type` is the new type: None, SystemAssigned, UserAssigned or
  "SystemAssigned, UserAssigned" (any case, any spacing after the comma);
- `identity.userAssignedIdentities` is a delta merged into the current set: `{}` adds the
  identity, `null` removes it (removing one that is not there changes nothing);
- a type without UserAssigned drops every user-assigned identity (and refuses `{}` entries); a
  type with UserAssigned needs at least one to remain; turning SystemAssigned off and on again
  gives the resource its system-assigned identity back (the devstack keeps one per resource);
- at most 150 entries per request (400 FailedIdentityOperation, "User Assigned Identities
  Number 'N' Assign exceed limit '150' in one request."); ids must be user-assigned identity
  resource ids, compared without case (400 LinkedInvalidPropertyId); unknown identities are
  refused (400 FailedIdentityOperation naming them); the caller needs the assign permission on
  every identity it adds, else 403 LinkedAuthorizationFailed naming every refused one.

A refused request changes nothing: every check runs before the new state is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.arm import errors
from devstack.arm.resources import (
    BOTH,
    IDENTITY_ID,
    NONE,
    SYSTEM,
    USER,
    IdentityState,
    normalise_type,
)

MAX_CHANGES = 150  # identity entries ARM accepts in one request
EVERYTHING = "*"


@dataclass(frozen=True)
class Caller:
    """Who asks (client id), for which action on which resource, and which identities (names,
    or "*") it may assign."""

    client_id: str
    action: str
    scope: str
    allowed: set[str]

    def may_assign(self, name: str) -> bool:
        return EVERYTHING in self.allowed or name in self.allowed


def apply_delta(
    current: IdentityState,
    raw: Any,
    directory: dict[str, str],
    caller: Caller,
    system_identity: Callable[[], str],
) -> IdentityState:
    """The identity state after the PATCH's `identity` object `raw`; ArmError when refused.
    `directory` maps every user-assigned identity's lower-case resource id to its name;
    `system_identity` gives (creating it if needed) the resource's system-assigned identity."""
    if not isinstance(raw, dict):
        raise errors.bad_request("identity must be an object.", target="identity")
    raw_type = raw.get("type")
    new_type = normalise_type(raw_type) if isinstance(raw_type, str) else None
    if new_type is None:
        raise errors.bad_request(
            f"The value of parameter identity.type is invalid: {raw_type!r}. Allowed values "
            f"are '{NONE}', '{SYSTEM}', '{USER}', '{BOTH}'.",
            code="InvalidParameter",
            target="identity.type",
        )
    changes = raw.get("userAssignedIdentities") or {}
    if not isinstance(changes, dict):
        raise errors.bad_request(
            "identity.userAssignedIdentities must be an object.",
            target="identity.userAssignedIdentities",
        )
    adds, removes = _changes(changes, directory, caller)
    users = (set(current.users) | adds) - removes
    with_system = new_type in (SYSTEM, BOTH)
    if new_type not in (USER, BOTH):
        if adds:
            raise errors.bad_request(
                f"The identity type '{new_type}' cannot carry user-assigned identities; use "
                f"'{USER}' or '{BOTH}' to assign them.",
                target="identity.userAssignedIdentities",
            )
        users = set()
    elif not users:
        raise errors.bad_request(
            f"The identity type '{new_type}' needs at least one user-assigned identity; "
            f"use '{SYSTEM if with_system else NONE}' when none remain.",
            target="identity.type",
        )
    return IdentityState(system_identity() if with_system else None, frozenset(users))


def _changes(
    changes: dict[str, Any], directory: dict[str, str], caller: Caller
) -> tuple[set[str], set[str]]:
    """(names to add, names to remove) from a userAssignedIdentities delta, or ArmError."""
    if len(changes) > MAX_CHANGES:
        raise errors.failed_identity_operation(
            "BadRequest",
            "BadRequest",
            f"User Assigned Identities Number '{len(changes)}' Assign exceed limit "
            f"'{MAX_CHANGES}' in one request.",
        )
    for key, value in changes.items():
        if not IDENTITY_ID.match(key):
            raise errors.bad_request(
                f"Property id '{key}' at path 'identity.userAssignedIdentities' is invalid. "
                "Expect fully qualified resource Id that start with "
                "'/subscriptions/{subscriptionId}' or '/providers/{resourceProviderNamespace}/'.",
                code="LinkedInvalidPropertyId",
            )
        if value is not None and value != {}:
            raise errors.bad_request(
                f"Invalid value for the identities '{key}'. The 'UserAssignedIdentities' "
                "property keys should only be empty json objects or null.",
                code="InvalidIdentityValues",
            )
    wanted = [k for k, v in changes.items() if v is not None]
    missing = [k for k in wanted if k.lower() not in directory]
    if missing:
        first = IDENTITY_ID.match(missing[0])
        group = first.group(2) if first else ""
        raise errors.failed_identity_operation(
            "NotFound",
            "ResourceNotFound",
            f"The Resource(s) '{','.join(missing)}' under resource group '{group}' were not found.",
        )
    refused = [k for k in wanted if not caller.may_assign(directory[k.lower()])]
    if refused:
        raise errors.linked_authorization_failed(
            caller.client_id, caller.action, caller.scope, refused
        )
    adds = {directory[k.lower()] for k in wanted}
    removes = {
        directory[k.lower()] for k, v in changes.items() if v is None and k.lower() in directory
    }
    return adds, removes
