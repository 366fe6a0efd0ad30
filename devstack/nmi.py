"""NMI stand-in: aad-pod-identity's node endpoint `GET /host/token/?resource=...` with
`podname`/`podns` headers, answering for the identity the seed assigns to that pod."""

from __future__ import annotations

from devstack.httpbase import Request, Response, Route, json_response, text_response
from devstack.tokens import TokenIssuer
from devstack.world import World


class NmiApp:
    def __init__(self, world: World, issuer: TokenIssuer) -> None:
        self.world = world
        self.issuer = issuer

    def classify(self, request: Request) -> Route:
        return Route(None, "nmi", "nmi")

    def throttled(self, route: Route, retry_after: int) -> Response:
        response = text_response(429, "too many requests")
        response.headers.append(("Retry-After", str(retry_after)))
        return response

    def unavailable(self, route: Route) -> Response:
        return text_response(503, "service unavailable")

    def internal_error(self, route: Route) -> Response:
        return text_response(500, "internal error")

    def handle(self, request: Request, route: Route) -> Response:
        if not request.path.startswith("/host/token"):
            return text_response(404, "404 page not found")
        podns = request.header("podns") or ""
        podname = request.header("podname") or ""
        if not podns or not podname:
            return text_response(400, "missing 'podname' and 'podns' from request header")
        resource = request.query.get("resource", "")
        if not resource:
            return text_response(400, "parameter resource cannot be empty")
        assignment = self.world.pod(podns, podname)
        not_ready = (
            assignment is None or self.world.seconds_since_start() < assignment.delay_seconds
        )
        identity = None if assignment is None else self.world.identities.get(assignment.identity)
        wanted = request.query.get("client_id", "")
        if not_ready or identity is None or (wanted and wanted != identity.client_id):
            # What NMI says once its identity lookup gives up (pod-identity's wording).
            return text_response(
                404,
                f"getting assigned identities for pod {podns}/{podname} in CREATED state failed "
                "after 16 attempts, retry duration [5]s, error: <nil>. Check MIC pod logs for "
                "identity assignment errors",
            )
        issued = self.issuer.issue(identity, resource)
        return json_response(
            200,
            {
                "token": {
                    "access_token": issued.access_token,
                    "refresh_token": "",
                    "expires_in": str(issued.expires_in),
                    "expires_on": str(issued.expires_on),
                    "not_before": str(issued.not_before),
                    "resource": issued.resource,
                    "token_type": "Bearer",
                },
                "clientid": identity.client_id,
            },
        )
