"""The Key Vault data plane of one vault as a devstack App: the bearer challenge, the
api-version and name checks, access policies, and Key Vault's error codes; each operation is
then handed to its object family (secrets, keys, certificates), found in one table."""

from __future__ import annotations

import re
from typing import Any

from devstack import crypto
from devstack.httpbase import Request, Response, Route, kv_error
from devstack.jwt import TokenError
from devstack.keyvault.certificates import Certificates
from devstack.keyvault.common import (
    KEYVAULT_RESOURCE,
    ApiError,
    Family,
    Operation,
    bad_parameter,
    parse_target,
)
from devstack.keyvault.keys import Keys
from devstack.keyvault.secrets import Secrets
from devstack.tokens import TokenIssuer
from devstack.world import BadInput, NotFound, World

FAMILIES: tuple[type[Family], ...] = (Secrets, Keys, Certificates)
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_API_VERSION = re.compile(r"^(\d+\.\d+|\d{4}-\d{2}-\d{2})(-preview(\.\d+)?)?$")
_NOT_FOUND_CODES = {
    "secret": "SecretNotFound",
    "key": "KeyNotFound",
    "certificate": "CertificateNotFound",
    "deleted secret": "SecretNotFound",
}


def not_found(exc: NotFound) -> Response:
    """The service's 404 for a missing object, version or deleted secret."""
    code = _NOT_FOUND_CODES.get(exc.kind, "NotFound")
    kind = "secret" if exc.kind == "deleted secret" else exc.kind
    if exc.kind == "deleted secret":
        message = f"Deleted Secret not found: {exc.name}"
    else:
        message = (
            f"A {kind} with (name/id) {exc.name} was not found in this key vault. If you "
            f"recently deleted this {kind} you may be able to recover it using the correct "
            "recovery command. For help resolving this issue, please see "
            "https://go.microsoft.com/fwlink/?linkid=2125182"
        )
    return kv_error(404, code, message)


class KeyVaultApp:
    """One vault's data plane, served on its own HTTPS port."""

    def __init__(self, world: World, issuer: TokenIssuer, vault_name: str) -> None:
        self.world = world
        self.issuer = issuer
        self.vault_name = vault_name
        # operation -> (access-policy category, the family's permission and handler)
        self._operations: dict[str, tuple[str, Operation]] = {}
        for family_type in FAMILIES:
            family = family_type(world, vault_name)
            for name, operation in family.operations().items():
                self._operations[name] = (family.category, operation)

    # --- App protocol ----------------------------------------------------------------------

    def classify(self, request: Request) -> Route:
        target = parse_target(request.method, request.path)
        return Route(self.vault_name, target.operation if target else "unknown", "keyvault")

    def throttled(self, route: Route, retry_after: int) -> Response:
        response = kv_error(
            429,
            "Throttled",
            "Request was not processed because too many requests were received. "
            "Reason: VaultRequestTypeLimitReached",
        )
        response.headers.append(("Retry-After", str(retry_after)))
        return response

    def unavailable(self, route: Route) -> Response:
        return kv_error(503, "ServiceUnavailable", "The service is temporarily unavailable.")

    def internal_error(self, route: Route) -> Response:
        return kv_error(500, "InternalServerError", "An unexpected error occurred.")

    def handle(self, request: Request, route: Route) -> Response:
        try:
            claims = self._authenticate(request)
            self._check_api_version(request)
            target = parse_target(request.method, request.path)
            if target is None:
                raise ApiError(
                    404 if request.method == "GET" else 405,
                    "NotFound" if request.method == "GET" else "MethodNotAllowed",
                    f"The requested resource {request.method} {request.path} is not supported.",
                )
            if target.name and not _NAME.match(target.name):
                raise bad_parameter(f"The request URI contains an invalid name: {target.name}")
            category, operation = self._operations[target.operation]
            self._authorize(claims, category, operation.permission)
            return operation.handler(request, target)
        except ApiError as exc:
            return exc.response
        except NotFound as exc:
            return not_found(exc)
        except BadInput as exc:
            return kv_error(400, "BadParameter", str(exc))
        except crypto.CryptoInputError as exc:
            return kv_error(400, "BadParameter", f"The certificate content is invalid: {exc}")

    # --- checks ----------------------------------------------------------------------------

    def _challenge(self, message: str) -> ApiError:
        error = ApiError(401, "Unauthorized", message)
        error.response.headers.append(
            (
                "WWW-Authenticate",
                f'Bearer authorization="{self.issuer.authority_host}/{self.world.tenant_id}", '
                f'resource="{KEYVAULT_RESOURCE}"',
            )
        )
        return error

    def _authenticate(self, request: Request) -> dict[str, Any]:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        try:
            return self.issuer.verify_for_keyvault(token.strip())
        except TokenError as exc:
            message = str(exc)
            if not message.startswith("AKV"):
                message = f"AKV10000: Request is missing a valid Bearer token: {message}."
            raise self._challenge(message) from None

    @staticmethod
    def _check_api_version(request: Request) -> None:
        version = request.query.get("api-version")
        if version is None:
            raise bad_parameter("The api-version query parameter is missing.")
        if not _API_VERSION.match(version):
            raise bad_parameter(
                f"The specified version ({version}) is not recognized. Consider using the latest "
                "supported version (2025-07-01)."
            )

    def _authorize(self, claims: dict[str, Any], category: str, permission: str) -> None:
        appid = str(claims.get("appid"))
        if self.world.allowed(self.vault_name, appid, category, permission):
            return
        raise ApiError(
            403,
            "Forbidden",
            f"The user, group or application 'appid={appid};oid={claims.get('oid')};"
            f"iss={claims.get('iss')}' does not have {category} {permission} permission on key "
            f"vault '{self.vault_name};location=devstack'. For help resolving this issue, please "
            "see https://go.microsoft.com/fwlink/?linkid=2125287",
            inner="AccessDenied",
        )
