"""Entra ID stand-in (client-credentials grant, v1 and v2, secret or JWT assertion; OpenID
discovery) and the IMDS managed-identity endpoint."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack.httpbase import Request, Response, Route, json_response, text_response
from devstack.jwt import TokenError
from devstack.tokens import Issued, TokenIssuer
from devstack.world import Identity, World

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MANAGED_KINDS = ("user-assigned", "system-assigned")


def aad_error(status: int, error: str, code: int, description: str) -> Response:
    """Entra ID's OAuth error body."""
    trace = str(uuid.uuid4())
    correlation = str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return json_response(
        status,
        {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {description} Trace ID: {trace} "
                f"Correlation ID: {correlation} Timestamp: {stamp}"
            ),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
        },
    )


def _resource_from_scope(scope: str) -> str | None:
    for item in scope.split():
        if item.endswith("/.default"):
            return item[: -len("/.default")]
    return None


def openid_configuration(host: str, tenant_id: str, issuer: str, v2: bool) -> dict[str, Any]:
    """The tenant's OpenID discovery document (v1 or v2 endpoints)."""
    base = f"{host}/{tenant_id}"
    prefix = f"{base}/oauth2/v2.0" if v2 else f"{base}/oauth2"
    return {
        "token_endpoint": f"{prefix}/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/discovery/v2.0/keys" if v2 else f"{base}/discovery/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/v2.0" if v2 else issuer,
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{prefix}/authorize",
        "device_authorization_endpoint": f"{prefix}/devicecode",
        "end_session_endpoint": f"{prefix}/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
        "tenant_region_scope": None,
        "cloud_instance_name": "devstack",
    }


def token_body(issued: Issued, v2: bool) -> dict[str, Any]:
    """The token response: v2 has numbers and no resource; v1 strings and the resource."""
    if v2:
        return {
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "ext_expires_in": issued.expires_in,
            "access_token": issued.access_token,
        }
    return {
        "token_type": "Bearer",
        "expires_in": str(issued.expires_in),
        "ext_expires_in": str(issued.expires_in),
        "expires_on": str(issued.expires_on),
        "not_before": str(issued.not_before),
        "resource": issued.resource,
        "access_token": issued.access_token,
    }


class EntraApp:
    """Routes: /<tenant>/oauth2/token (v1), /<tenant>/oauth2/v2.0/token (v2),
    /<tenant>/v2.0/.well-known/openid-configuration, /<tenant>/.well-known/openid-configuration,
    /<tenant>/discovery/v2.0/keys, /common/discovery/instance."""

    def __init__(self, world: World, issuer: TokenIssuer) -> None:
        self.world = world
        self.issuer = issuer

    @property
    def host(self) -> str:
        return self.issuer.authority_host

    def classify(self, request: Request) -> Route:
        parts = [p for p in request.path.split("/") if p]
        if parts[-1:] == ["token"]:
            operation = "token"
        elif parts[-1:] == ["openid-configuration"] or parts[-2:] == ["discovery", "instance"]:
            operation = "discovery"
        else:
            operation = "entra.other"
        return Route(None, operation, "token")

    def throttled(self, route: Route, retry_after: int) -> Response:
        response = aad_error(
            429, "temporarily_unavailable", 50196, "The server is throttling requests."
        )
        response.headers.append(("Retry-After", str(retry_after)))
        return response

    def unavailable(self, route: Route) -> Response:
        return aad_error(503, "temporarily_unavailable", 90033, "A transient error has occurred.")

    def internal_error(self, route: Route) -> Response:
        return aad_error(500, "server_error", 90100, "An internal error occurred.")

    def handle(self, request: Request, route: Route) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:3] == ["common", "discovery", "instance"]:
            return self._instance_discovery(request)
        if not parts:
            return aad_error(404, "invalid_request", 900561, "The endpoint was not found.")
        tenant, rest = parts[0], parts[1:]
        if tenant.lower() != self.world.tenant_id.lower():
            return aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        openid = {
            ("v2.0", ".well-known", "openid-configuration"): True,
            (".well-known", "openid-configuration"): False,
        }.get(tuple(rest))
        if openid is not None and request.method == "GET":
            document = openid_configuration(
                self.host, self.world.tenant_id, self.issuer.issuer, v2=openid
            )
            return json_response(200, document)
        if rest in (["discovery", "v2.0", "keys"], ["discovery", "keys"]):
            return json_response(200, self.issuer.jwks())
        if rest == ["oauth2", "v2.0", "token"] and request.method == "POST":
            return self._token(request, v2=True)
        if rest == ["oauth2", "token"] and request.method == "POST":
            return self._token(request, v2=False)
        return aad_error(404, "invalid_request", 900561, "The endpoint only accepts known paths.")

    def _instance_discovery(self, request: Request) -> Response:
        endpoint = request.query.get("authorization_endpoint", "")
        path = [p for p in urlsplit(endpoint).path.split("/") if p]
        tenant = path[0] if path else self.world.tenant_id
        host = urlsplit(self.host).netloc
        return json_response(
            200,
            {
                "tenant_discovery_endpoint": f"{self.host}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            },
        )

    def _token(self, request: Request, v2: bool) -> Response:
        form = dict(
            parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
        )
        grant = form.get("grant_type", "")
        if not grant:
            return aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant != "client_credentials":
            return aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = form.get("client_id", "")
        if not client_id:
            return aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if v2:
            if "scope" not in form:
                return aad_error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'scope'.",
                )
            resource = _resource_from_scope(form["scope"])
            if resource is None:
                return aad_error(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {form['scope']} is not valid. Client credential "
                    "flows must have a scope value with /.default suffixed to the resource identifier "
                    "(application ID URI).",
                )
        else:
            resource = form.get("resource", "")
            if not resource:
                return aad_error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'resource'.",
                )
        identity = self.world.by_client_id(client_id)
        if identity is None or identity.kind in MANAGED_KINDS:
            return aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.world.tenant_id}'.",
            )
        failure = self._authenticate(identity, form)
        if failure is not None:
            return failure
        issued = self.issuer.issue(identity, resource)
        return json_response(200, token_body(issued, v2))

    def _authenticate(self, identity: Identity, form: dict[str, str]) -> Response | None:
        if "client_secret" in form:
            if identity.client_secret is None or form["client_secret"] != identity.client_secret:
                return aad_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request "
                    "is the client secret value, not the client secret ID, for a secret added to "
                    f"app '{identity.client_id}'.",
                )
            return None
        if "client_assertion" in form:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return aad_error(
                    400,
                    "invalid_request",
                    700003,
                    f"client_assertion_type must be {ASSERTION_TYPE}.",
                )
            try:
                self.issuer.federation_for(identity, form["client_assertion"])
            except TokenError as exc:
                return aad_error(401, "invalid_client", 700213, str(exc).split(": ", 1)[-1])
            return None
        return aad_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )


def imds_error(status: int, description: str, error: str = "invalid_request") -> Response:
    return json_response(status, {"error": error, "error_description": description})


class ImdsApp:
    """`GET /metadata/identity/oauth2/token`: the VM's system-assigned identity, or a
    user-assigned one chosen by `client_id`, `object_id` or `msi_res_id`/`mi_res_id`.

    Which node is calling is explicit, since every node's IMDS is this one server: the plain
    path answers for the seed's `arm.default_node`, `/nodes/<node>/metadata/identity/oauth2/token`
    for `<node>` (so `AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:<port>/nodes/<node>`
    makes an unmodified SDK that node). As in Azure, a node gets tokens only for the identities
    in effect on its VM or scale set; any other is "Identity not found". A world without VMs or
    scale sets has no nodes: then every managed identity is served to every caller."""

    def __init__(self, world: World, issuer: TokenIssuer) -> None:
        self.world = world
        self.issuer = issuer

    def classify(self, request: Request) -> Route:
        return Route(None, "imds", "imds")

    def throttled(self, route: Route, retry_after: int) -> Response:
        response = imds_error(429, "Too many requests", error="too_many_requests")
        response.headers.append(("Retry-After", str(retry_after)))
        return response

    def unavailable(self, route: Route) -> Response:
        return imds_error(
            503, "The service is temporarily unavailable", error="service_unavailable"
        )

    def internal_error(self, route: Route) -> Response:
        return imds_error(500, "An unexpected error occurred", error="unknown_error")

    def handle(self, request: Request, route: Route) -> Response:
        path = request.path.rstrip("/")
        node = self.world.compute.settings.default_node
        if path.startswith("/nodes/"):
            node, _, path = path[len("/nodes/") :].partition("/")
            path = "/" + path
        if path != "/metadata/identity/oauth2/token":
            return text_response(404, "Not found")
        if request.header("Metadata") != "true":
            return imds_error(400, "Required metadata header not specified")
        if not request.query.get("api-version"):
            return imds_error(
                400, "Required query variable 'api-version' is missing", error="Bad request"
            )
        resource = request.query.get("resource", "")
        if not resource:
            return imds_error(400, "Required audience parameter not specified")
        managed = self._managed(node)
        if managed is None:
            return text_response(404, "Not found")
        identity = self._select(request.query, managed)
        if identity is None:
            return imds_error(400, "Identity not found")
        issued = self.issuer.issue(identity, resource)
        return json_response(
            200,
            {
                "access_token": issued.access_token,
                "client_id": identity.client_id,
                "expires_in": str(issued.expires_in),
                "expires_on": str(issued.expires_on),
                "ext_expires_in": str(issued.expires_in),
                "not_before": str(issued.not_before),
                "resource": issued.resource,
                "token_type": "Bearer",
            },
        )

    def _managed(self, node: str | None) -> list[Identity] | None:
        """The managed identities `node` may use (system-assigned first); None: no such node."""
        compute = self.world.compute
        if not compute.bound:
            with self.world.locked():
                return [i for i in self.world.identities.values() if i.kind in MANAGED_KINDS]
        state = compute.node_state(node) if node else None
        if state is None:
            return None
        names = ([state.system] if state.system else []) + sorted(state.users)
        return [self.world.identity(name) for name in names]

    @staticmethod
    def _select(query: dict[str, str], managed: list[Identity]) -> Identity | None:
        wanted_id = query.get("client_id") or query.get("object_id")
        if wanted_id:
            wanted = wanted_id.lower()
            return next(
                (i for i in managed if wanted in (i.client_id.lower(), i.principal_id.lower())),
                None,
            )
        res_id = query.get("msi_res_id") or query.get("mi_res_id")
        if res_id:
            wanted = res_id.rstrip("/").lower()
            name = wanted.rsplit("/", 1)[-1]
            return next(
                (
                    i
                    for i in managed
                    if i.kind == "user-assigned"
                    and (i.resource_id.lower() == wanted or i.name.lower() == name)
                ),
                None,
            )
        return next((i for i in managed if i.kind == "system-assigned"), None)
