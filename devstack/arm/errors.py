"""ARM's error shape, `{"error": {"code", "message", "target"?, "details"?}}`, and the errors
the compute stand-in raises with the codes and messages Azure uses."""

from __future__ import annotations

import json
from typing import Any

from devstack.httpbase import Response, json_response


class ArmError(Exception):
    """A refused ARM request: HTTP status, ARM error code and message."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.target = target

    @property
    def response(self) -> Response:
        return arm_error(self.status, self.code, str(self), self.target)


def arm_error(status: int, code: str, message: str, target: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if target is not None:
        error["target"] = target
    return json_response(status, {"error": error})


def not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not "
        "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def authorization_failed(principal: str, action: str, scope: str) -> ArmError:
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{principal}' with object id '{principal}' does not have authorization to "
        f"perform action '{action}' over scope '{scope}' or the scope is invalid. If access was "
        "recently granted, please refresh your credentials.",
    )


def linked_authorization_failed(
    principal: str, action: str, scope: str, refused: list[str]
) -> ArmError:
    """403 naming every identity the caller may not assign, comma-separated and quoted once,
    as ARM words it (MIC parses the ids out of this message)."""
    return ArmError(
        403,
        "LinkedAuthorizationFailed",
        f"The client '{principal}' with object id '{principal}' has permission to perform action "
        f"'{action}' on scope '{scope}'; however, it does not have permission to perform action "
        "'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) "
        f"'{','.join(refused)}' or the linked scope(s) are invalid.",
    )


def failed_identity_operation(status: str, inner_code: str, inner_message: str) -> ArmError:
    """The identity service's refusal wrapped the way ARM wraps it (400)."""
    inner = json.dumps(
        {"error": {"code": inner_code, "message": inner_message}}, separators=(",", ":")
    )
    return ArmError(
        400,
        "FailedIdentityOperation",
        f"Failed to perform resource identity operation. Status: '{status}'. Response: '{inner}'.",
    )


def bad_request(message: str, code: str = "BadRequest", target: str | None = None) -> ArmError:
    return ArmError(400, code, message, target)
