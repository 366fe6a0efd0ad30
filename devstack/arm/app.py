"""The ARM endpoint (HTTPS, the devstack CA) for the compute resources MIC changes.

Routes (every one needs `api-version` and a bearer token from the devstack's Entra ID for
`https://management.azure.com/`):

  GET   /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}
  PATCH (same)                                   {"identity": {...}} -> 200 + Azure-AsyncOperation
  GET   /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{n}
  PATCH (same)
  GET   /subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{id}
                                                 {"status": "InProgress" | "Succeeded", ...}

Path segments are matched without case, as ARM does. Every answer carries
`x-ms-ratelimit-remaining-subscription-reads` or `-writes` (per subscription and hour; the
devstack counts but never enforces them: throttling is a fault rule, endpoint `arm`, keyed by
subscription). LRO answers carry the time left as `Retry-After` (whole seconds, when at least
one is left) or `retry-after-ms` (below one second), both of which azure-core honours, so a
devstack operation of 0.2 s is polled after 0.2 s rather than after the SDK's default 30 s.
What PATCH does to the identity block is in `devstack/arm/compute.py`."""

from __future__ import annotations

import math
import re
import threading
import time
from typing import Any

from devstack.arm.compute import Compute
from devstack.arm.errors import ArmError, arm_error
from devstack.httpbase import Request, Response, Route, json_response
from devstack.jwt import TokenError
from devstack.tokens import TokenIssuer
from devstack.world import World

ARM_RESOURCE = "https://management.azure.com/"
AUDIENCES = (
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
)
_RESOURCE = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.compute/"
    r"(virtualmachines|virtualmachinescalesets)/([^/]+)/?$",
    re.IGNORECASE,
)
_OPERATION = re.compile(
    r"^/subscriptions/([^/]+)/providers/microsoft\.compute/locations/([^/]+)/operations/([^/]+)/?$",
    re.IGNORECASE,
)
_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_KINDS = {"virtualmachines": "vm", "virtualmachinescalesets": "vmss"}
HOURLY = {"reads": 12000, "writes": 1200}  # ARM's per-subscription budgets


class _Budget:
    """Requests per subscription in the current hour, for the x-ms-ratelimit headers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hour = 0
        self._used: dict[tuple[str, str], int] = {}

    def spend(self, subscription: str, kind: str) -> int:
        with self._lock:
            hour = int(time.time() // 3600)
            if hour != self._hour:
                self._hour, self._used = hour, {}
            key = (subscription.lower(), kind)
            self._used[key] = self._used.get(key, 0) + 1
            return max(0, HOURLY[kind] - self._used[key])


def retry_hint(seconds: float) -> list[tuple[str, str]]:
    """When to poll again: the time left, never 0 (azure-core reads 0 as "no hint")."""
    if seconds >= 1:
        return [("Retry-After", str(math.ceil(seconds)))]
    return [("retry-after-ms", str(max(1, math.ceil(seconds * 1000))))]


class ArmApp:
    """The ARM server's App: the routes in this module's docstring."""

    def __init__(self, world: World, issuer: TokenIssuer, compute: Compute) -> None:
        self.world = world
        self.issuer = issuer
        self.compute = compute
        self.base_url = ""  # set once the server is bound
        self._budget = _Budget()

    # --- App protocol ----------------------------------------------------------------------

    def classify(self, request: Request) -> Route:
        subscription = _SUBSCRIPTION.match(request.path)
        scope = subscription.group(1).lower() if subscription else None
        resource = _RESOURCE.match(request.path)
        if resource and request.method in ("GET", "PATCH"):
            kind = _KINDS[resource.group(3).lower()]
            return Route(scope, f"{kind}.{request.method.lower()}", "arm")
        if _OPERATION.match(request.path) and request.method == "GET":
            return Route(scope, "arm.operation", "arm")
        return Route(scope, "arm.other", "arm")

    def throttled(self, route: Route, retry_after: int) -> Response:
        kind = "read" if route.operation.endswith((".get", ".operation")) else "write"
        response = arm_error(
            429,
            "SubscriptionRequestsThrottled",
            f"Number of '{kind}' requests for subscription '{route.vault}' exceeded. Please try "
            f"again after '{retry_after}' seconds after additional tokens are available. Refer "
            "to https://aka.ms/arm-throttling for additional information.",
        )
        response.headers.append(("Retry-After", str(retry_after)))
        return response

    def unavailable(self, route: Route) -> Response:
        return arm_error(
            503, "ServiceUnavailable", "The service is temporarily unavailable. Please retry."
        )

    def internal_error(self, route: Route) -> Response:
        return arm_error(500, "InternalServerError", "Encountered internal server error.")

    def handle(self, request: Request, route: Route) -> Response:
        try:
            caller = self._authenticate(request)
            self._check_api_version(request)
            response = self._route(request, caller)
        except ArmError as exc:
            response = exc.response
            if exc.status == 401:
                response.headers.append(self._challenge())
        if route.vault is not None:
            kind = "reads" if request.method == "GET" else "writes"
            left = self._budget.spend(route.vault, kind)
            response.headers.append((f"x-ms-ratelimit-remaining-subscription-{kind}", str(left)))
        return response

    # --- routes ----------------------------------------------------------------------------

    def _route(self, request: Request, caller: str) -> Response:
        resource = _RESOURCE.match(request.path)
        if resource:
            subscription, rg, kind_raw, name = resource.groups()
            kind = _KINDS[kind_raw.lower()]
            if request.method == "GET":
                return json_response(200, self.compute.get(caller, kind, subscription, rg, name))
            if request.method == "PATCH":
                return self._patch(request, caller, kind, subscription, rg, name)
            raise ArmError(
                405,
                "MethodNotAllowed",
                f"The devstack supports GET and PATCH on {request.path}, not {request.method}.",
            )
        operation = _OPERATION.match(request.path)
        if operation and request.method == "GET":
            found = self.compute.operation(operation.group(1), operation.group(3))
            if found is None:
                raise ArmError(
                    404, "NotFound", f"The operation '{operation.group(3)}' was not found."
                )
            headers = [] if found.ended is not None else retry_hint(found.remaining())
            return json_response(200, found.view(), headers)
        raise ArmError(
            404,
            "InvalidResourceType",
            f"The devstack's resource manager has no route for {request.method} {request.path}.",
        )

    def _patch(
        self, request: Request, caller: str, kind: str, subscription: str, rg: str, name: str
    ) -> Response:
        try:
            body: Any = request.json()
        except ValueError:
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized.",
            ) from None
        view, operation = self.compute.update(caller, kind, subscription, rg, name, body)
        location = self.compute.settings.location
        status_url = (
            f"{self.base_url}/subscriptions/{operation.subscription}/providers/Microsoft.Compute/"
            f"locations/{location}/operations/{operation.id}"
            f"?api-version={request.query['api-version']}"
        )
        headers = [("Azure-AsyncOperation", status_url), *retry_hint(operation.remaining())]
        return json_response(200, view, headers)

    # --- checks ----------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> str:
        """The caller's client id, from a valid ARM token; 401 in ARM's words otherwise."""
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        try:
            claims = self.issuer.verify_signature(token.strip())
        except TokenError:
            raise _unauthenticated(
                "InvalidAuthenticationToken", "The access token is invalid."
            ) from None
        if claims.get("aud") not in AUDIENCES:
            raise _unauthenticated(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource "
                f"'{claims.get('aud')}'. It should exactly match with one of the allowed "
                f"audiences {','.join(repr(a) for a in AUDIENCES)}.",
            )
        if claims.get("iss") != self.issuer.issuer or claims.get("tid") != self.world.tenant_id:
            raise _unauthenticated(
                "InvalidAuthenticationTokenTenant",
                "The access token is from the wrong issuer. It must match the tenant "
                f"'{self.issuer.issuer}' associated with this subscription.",
            )
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= int(time.time()):
            raise _unauthenticated(
                "ExpiredAuthenticationToken", "The access token expiry time has passed."
            )
        appid = claims.get("appid")
        if not isinstance(appid, str):
            raise _unauthenticated("InvalidAuthenticationToken", "The token has no appid claim.")
        return appid

    def _challenge(self) -> tuple[str, str]:
        authority = f"{self.issuer.authority_host}/{self.world.tenant_id}"
        return (
            "WWW-Authenticate",
            f'Bearer authorization_uri="{authority}", error="invalid_token", '
            'error_description="The authentication failed."',
        )

    @staticmethod
    def _check_api_version(request: Request) -> None:
        version = request.query.get("api-version")
        if not version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if not _API_VERSION.match(version):
            raise ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are dates "
                "such as '2019-12-01' or '2024-07-01'.",
            )


def _unauthenticated(code: str, message: str) -> ArmError:
    return ArmError(401, code, message)
