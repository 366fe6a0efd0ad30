"""The devstack's control API (plain HTTP, JSON): faults, counters, object changes behind the
back of the data plane, service-account tokens, access revocation. Never faulted or counted.

Routes:
  GET    /health                                         {"ok": true}
  GET    /state                                          the devstack.json document
  GET    /faults                                         {"faults": [...]}
  POST   /faults      {"vault","endpoint","latency_ms","rate_429","rate_503","drop","retry_after"}
                      (an empty body clears every rule)
  DELETE /faults
  GET    /counters                                       {"requests": [{vault,operation,status,count}]}
  POST   /counters/reset
  POST   /vaults/<v>/secrets/<name>   {"value","content_type","enabled","tags"} -> {"id","version"}
  POST   /vaults/<v>/secrets/<name>/<version>/enabled    {"enabled": bool}
  DELETE /vaults/<v>/secrets/<name>
  POST   /vaults/<v>/keys/<name>      {"kty","size","curve"} -> {"id","version"}
  POST   /vaults/<v>/certificates/<name>
                      {"kty","size","curve","subject","content_type","chain"} (self-signed, or a
                      generated chain), {"pem": text} or {"pfx_base64": b64, "password": pw}
                      -> {"id","version","sid","kid"}
  PUT    /vaults/<v>/policies/<identity>   {"secrets": [...], "keys": [...], "certificates": [...]}
  POST   /identities/<name>/revoke
  GET    /arm/resources                                  {"resources": [every VM and scale set:
                      kind, id, name, nodes, identity_type, system_assigned, user_assigned,
                      effective_user_assigned, updating, patches (accepted since start)]}
  POST   /arm/resources/<name>/identities   {"add": [identity], "remove": [identity]}
                      attach/detach at once, as by hand in the portal (no operation, no checks)
  PUT    /arm/operators/<identity>          {"identities": [names or "*"]} who it may assign
  POST   /sa-token    {"namespace","service_account","audience","expires_in"} -> {"token"}
  POST   /sa-issuers  {"issuer","public_key_pem"}: federations also accept service-account
                      tokens from this issuer (a real cluster's API server)
  POST   /tokens      {"identity","resource","expires_in"} -> {"access_token"} (test tokens,
                      e.g. already expired or for another audience)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from cryptography import x509

from devstack import crypto
from devstack.faults import Counters, FaultTable, parse_fault
from devstack.httpbase import Request, Response, Route, json_response, kv_error
from devstack.seed import make_chain
from devstack.tokens import TokenIssuer
from devstack.world import SA_AUDIENCE, BadInput, NotFound, World


class AdminError(Exception):
    """A refused admin request: its HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is {}."""
    if not request.body.strip():
        return {}
    try:
        body = request.json()
    except ValueError:
        raise AdminError(400, "BadParameter", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise AdminError(400, "BadParameter", "The request body must be a JSON object.")
    return body


def _certificate_material(
    body: dict[str, Any], name: str
) -> tuple[crypto.PrivateKey, list[x509.Certificate], str]:
    """(key, chain, issuer name) from an imported PEM or PKCS#12, or generated: self-signed,
    or under a generated CA chain."""
    if "pem" in body:
        key, chain = crypto.parse_pem_bundle(str(body["pem"]))
        issuer = "Unknown"
    elif "pfx_base64" in body:
        try:
            raw = base64.b64decode(str(body["pfx_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise AdminError(400, "BadParameter", "pfx_base64 is not base64") from None
        key, chain = crypto.parse_pfx(raw, body.get("password"))
        issuer = "Unknown"
    else:
        key = crypto.generate_key(
            str(body.get("kty") or "RSA"),
            int(body.get("size") or 2048),
            str(body.get("curve") or "P-256"),
        )
        subject = str(body.get("subject") or f"CN={name}")
        if body.get("chain"):
            chain, issuer = make_chain(subject, key), "Unknown"
        else:
            chain, issuer = [crypto.make_certificate(subject, key)], "Self"
    return key, chain, issuer


class AdminApp:
    """The admin server's App: the routes in this module's docstring."""

    def __init__(
        self,
        world: World,
        issuer: TokenIssuer,
        faults: FaultTable,
        counters: Counters,
        state: Callable[[], dict[str, Any]],
    ) -> None:
        self.world = world
        self.issuer = issuer
        self.faults = faults
        self.counters = counters
        self.state = state
        self._vaults = VaultRoutes(world)

    def classify(self, request: Request) -> Route:
        return Route(None, "admin", "admin")

    def throttled(self, route: Route, retry_after: int) -> Response:
        return kv_error(429, "Throttled", "throttled")

    def unavailable(self, route: Route) -> Response:
        return kv_error(503, "ServiceUnavailable", "unavailable")

    def internal_error(self, route: Route) -> Response:
        return kv_error(500, "InternalServerError", "An unexpected error occurred.")

    def handle(self, request: Request, route: Route) -> Response:
        try:
            return self._route(request)
        except AdminError as exc:
            return kv_error(exc.status, exc.code, str(exc))
        except NotFound as exc:
            return kv_error(404, "NotFound", str(exc))
        except (BadInput, crypto.CryptoInputError, ValueError, TypeError) as exc:
            return kv_error(400, "BadParameter", str(exc))

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts == ["health"]:
            return json_response(200, {"ok": True})
        if parts == ["state"]:
            return json_response(200, self.state())
        if parts == ["faults"]:
            return self._faults(request)
        if parts == ["counters"] and method == "GET":
            return json_response(200, {"requests": self.counters.snapshot()})
        if parts == ["counters", "reset"] and method == "POST":
            self.counters.reset()
            return json_response(200, {"ok": True})
        if parts == ["sa-token"] and method == "POST":
            return self._sa_token(request)
        if parts == ["tokens"] and method == "POST":
            return self._token(request)
        if parts == ["sa-issuers"] and method == "POST":
            body = _json_body(request)
            try:
                self.issuer.trust_sa_issuer(str(body["issuer"]), str(body["public_key_pem"]))
            except (KeyError, ValueError) as exc:
                raise AdminError(400, "BadParameter", f"issuer and public_key_pem: {exc}") from None
            return json_response(200, {"ok": True})
        if (
            len(parts) == 3
            and parts[0] == "identities"
            and parts[2] == "revoke"
            and method == "POST"
        ):
            self.world.revoke(parts[1])
            return json_response(200, {"ok": True})
        if len(parts) >= 4 and parts[0] == "vaults":
            return self._vaults.route(request, parts[1], parts[2], parts[3:])
        if parts and parts[0] == "arm":
            return self._arm(request, parts[1:])
        raise AdminError(404, "NotFound", f"no admin route for {method} {request.path}")

    def _faults(self, request: Request) -> Response:
        if request.method == "GET":
            return json_response(200, {"faults": self.faults.describe()})
        if request.method == "DELETE":
            self.faults.clear()
            return json_response(200, {"faults": []})
        if request.method != "POST":
            raise AdminError(405, "MethodNotAllowed", "use GET, POST or DELETE on /faults")
        body = _json_body(request)
        if not body:
            self.faults.clear()
        else:
            vault, endpoint, fault = parse_fault(body)
            if vault != "*" and endpoint != "arm":
                self.world.vault(vault)
            self.faults.set(vault, endpoint, fault)
        return json_response(200, {"faults": self.faults.describe()})

    def _arm(self, request: Request, parts: list[str]) -> Response:
        compute = self.world.compute
        if parts == ["resources"] and request.method == "GET":
            return json_response(200, {"resources": compute.describe()})
        if (
            len(parts) == 3
            and parts[0] == "resources"
            and parts[2] == "identities"
            and request.method == "POST"
        ):
            body = _json_body(request)
            add = [str(n) for n in body.get("add") or []]
            remove = [str(n) for n in body.get("remove") or []]
            return json_response(200, compute.set_by_hand(parts[1], add, remove))
        if len(parts) == 2 and parts[0] == "operators" and request.method == "PUT":
            names = _json_body(request).get("identities")
            if not isinstance(names, list):
                raise AdminError(400, "BadParameter", "identities (a list of names) is required")
            compute.set_operator(parts[1], [str(n) for n in names])
            return json_response(200, {"ok": True})
        raise AdminError(404, "NotFound", f"no admin route for {request.method} {request.path}")

    def _sa_token(self, request: Request) -> Response:
        body = _json_body(request)
        namespace = str(body.get("namespace") or "")
        service_account = str(body.get("service_account") or "")
        if not namespace or not service_account:
            raise AdminError(400, "BadParameter", "namespace and service_account are required")
        token = self.issuer.issue_sa_token(
            namespace,
            service_account,
            str(body.get("audience") or SA_AUDIENCE),
            int(body.get("expires_in") or 3600),
        )
        return json_response(200, {"token": token})

    def _token(self, request: Request) -> Response:
        body = _json_body(request)
        identity = self.world.identity(str(body.get("identity") or self.world.admin))
        issued = self.issuer.issue(
            identity,
            str(body.get("resource") or "https://vault.azure.net"),
            int(body["expires_in"]) if "expires_in" in body else None,
        )
        return json_response(
            200, {"access_token": issued.access_token, "expires_on": issued.expires_on}
        )


class VaultRoutes:
    """The /vaults/<v>/... routes: objects and access policies changed behind the back of the
    data plane."""

    def __init__(self, world: World) -> None:
        self.world = world

    def route(self, request: Request, vault_name: str, kind: str, rest: list[str]) -> Response:
        vault = self.world.vault(vault_name)
        method = request.method
        name = rest[0]
        if kind == "secrets" and len(rest) == 1 and method == "POST":
            body = _json_body(request)
            value = body.get("value")
            if not isinstance(value, str):
                raise AdminError(400, "BadParameter", "value (a string) is required")
            v = self.world.set_secret(
                vault.name,
                name,
                value,
                body.get("content_type"),
                enabled=bool(body.get("enabled", True)),
                tags=body.get("tags"),
            )
            display, _ = self.world.secret(vault.name, name, v.version)
            return json_response(
                200, {"id": f"{vault.base_url}/secrets/{display}/{v.version}", "version": v.version}
            )
        if kind == "secrets" and len(rest) == 3 and rest[2] == "enabled" and method == "POST":
            enabled = _json_body(request).get("enabled")
            if not isinstance(enabled, bool):
                raise AdminError(400, "BadParameter", "enabled (true or false) is required")
            display, v = self.world.update_secret(vault.name, name, rest[1], enabled=enabled)
            return json_response(
                200,
                {"id": f"{vault.base_url}/secrets/{display}/{v.version}", "enabled": v.enabled},
            )
        if kind == "secrets" and len(rest) == 1 and method == "DELETE":
            self.world.delete_secret(vault.name, name)
            return json_response(200, {"ok": True})
        if kind == "keys" and len(rest) == 1 and method == "POST":
            body = _json_body(request)
            key = crypto.generate_key(
                str(body.get("kty") or "RSA"),
                int(body.get("size") or 2048),
                str(body.get("curve") or "P-256"),
            )
            kv = self.world.add_key(vault.name, name, key)
            display, _ = self.world.key(vault.name, name, kv.version)
            return json_response(
                200, {"id": f"{vault.base_url}/keys/{display}/{kv.version}", "version": kv.version}
            )
        if kind == "certificates" and len(rest) == 1 and method == "POST":
            return self._certificate(request, vault.name, vault.base_url, name)
        if kind == "policies" and len(rest) == 1 and method == "PUT":
            body = _json_body(request)
            self.world.set_policy(vault.name, name, {k: list(v) for k, v in body.items()})
            return json_response(200, {"ok": True})
        raise AdminError(404, "NotFound", f"no admin route for {method} {request.path}")

    def _certificate(self, request: Request, vault: str, base_url: str, name: str) -> Response:
        body = _json_body(request)
        content_type = str(body.get("content_type") or crypto.PKCS12_CONTENT_TYPE)
        key, chain, issuer = _certificate_material(body, name)
        v = self.world.add_certificate(vault, name, key, chain, content_type, issuer_name=issuer)
        display, _ = self.world.certificate(vault, name, v.version)
        return json_response(
            200,
            {
                "id": f"{base_url}/certificates/{display}/{v.version}",
                "sid": f"{base_url}/secrets/{display}/{v.version}",
                "kid": f"{base_url}/keys/{display}/{v.version}",
                "version": v.version,
            },
        )
