"""Typed calls to a running devstack's admin API (the routes in `devstack/admin.py`): object
changes, access policies, tokens, faults and counters. Standard library only."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any

SA_AUDIENCE = "api://AzureADTokenExchange"


class DevstackError(RuntimeError):
    """The devstack could not be started, or its admin API refused a request."""


class AdminClient:
    """The admin API of the devstack at `admin_url`; `devstack.client.Devstack` extends it."""

    admin_url: str

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.admin_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = json.loads(detail)["error"]["message"]
            raise DevstackError(f"devstack admin {method} {path}: {exc.code} {detail}") from None
        except urllib.error.URLError as exc:
            raise DevstackError(
                f"devstack admin API at {self.admin_url} unreachable: {exc.reason}"
            ) from None

    def set_secret(
        self,
        vault: str,
        name: str,
        value: str,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Add a new version of a secret; returns the version id."""
        body: dict[str, Any] = {"value": value}
        if content_type is not None:
            body["content_type"] = content_type
        if tags is not None:
            body["tags"] = tags
        return str(self._call("POST", f"/vaults/{vault}/secrets/{name}", body)["version"])

    def set_secret_enabled(self, vault: str, name: str, version: str, enabled: bool) -> None:
        self._call(
            "POST", f"/vaults/{vault}/secrets/{name}/{version}/enabled", {"enabled": enabled}
        )

    def delete_secret(self, vault: str, name: str) -> None:
        self._call("DELETE", f"/vaults/{vault}/secrets/{name}")

    def create_key(
        self, vault: str, name: str, kty: str = "RSA", size: int = 2048, curve: str = "P-256"
    ) -> str:
        return str(
            self._call(
                "POST", f"/vaults/{vault}/keys/{name}", {"kty": kty, "size": size, "curve": curve}
            )["version"]
        )

    def create_certificate(self, vault: str, name: str, **spec: Any) -> dict[str, str]:
        """Self-signed (kty, size, curve, subject, content_type, chain) or imported (pem=...,
        or pfx_base64=... with password=...); returns {"id", "sid", "kid", "version"}."""
        result: dict[str, str] = self._call("POST", f"/vaults/{vault}/certificates/{name}", spec)
        return result

    def set_policy(self, vault: str, identity: str, **permissions: list[str]) -> None:
        self._call("PUT", f"/vaults/{vault}/policies/{identity}", permissions)

    def sa_token(
        self,
        namespace: str,
        service_account: str,
        audience: str = SA_AUDIENCE,
        expires_in: int = 3600,
    ) -> str:
        body = {
            "namespace": namespace,
            "service_account": service_account,
            "audience": audience,
            "expires_in": expires_in,
        }
        return str(self._call("POST", "/sa-token", body)["token"])

    def trust_sa_issuer(self, issuer: str, public_key_pem: str) -> None:
        """Let workload-identity federations accept a real cluster's service-account tokens."""
        self._call("POST", "/sa-issuers", {"issuer": issuer, "public_key_pem": public_key_pem})

    def access_token(
        self,
        identity: str | None = None,
        resource: str | None = None,
        expires_in: int | None = None,
    ) -> str:
        """A signed access token minted directly (for tests of expired/wrong-audience tokens)."""
        body: dict[str, Any] = {}
        if identity is not None:
            body["identity"] = identity
        if resource is not None:
            body["resource"] = resource
        if expires_in is not None:
            body["expires_in"] = expires_in
        return str(self._call("POST", "/tokens", body)["access_token"])

    def fault(self, **kw: Any) -> None:
        """Set a fault rule: vault, endpoint, latency_ms, rate_429, rate_503, drop, retry_after."""
        self._call("POST", "/faults", kw)

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def counters(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/counters")["requests"]
        return result

    def count(
        self, vault: str | None = None, operation: str | None = None, status: int | None = None
    ) -> int:
        return sum(
            int(c["count"])
            for c in self.counters()
            if (vault is None or c["vault"] == vault)
            and (operation is None or c["operation"] == operation)
            and (status is None or c["status"] == status)
        )

    def reset_counters(self) -> None:
        self._call("POST", "/counters/reset")

    def revoke(self, identity: str) -> None:
        self._call("POST", f"/identities/{identity}/revoke")

    # --- Azure Resource Manager (devstack/arm) ------------------------------------------------

    def arm_resources(self) -> list[dict[str, Any]]:
        """Every VM and scale set with its identities (see `GET /arm/resources`)."""
        result: list[dict[str, Any]] = self._call("GET", "/arm/resources")["resources"]
        return result

    def arm_resource(self, name: str) -> dict[str, Any]:
        """One VM or scale set by name (the first one found)."""
        for resource in self.arm_resources():
            if resource["name"].lower() == name.lower():
                return resource
        raise DevstackError(f"devstack has no VM or scale set named {name!r}")

    def attached(self, name: str) -> list[str]:
        """The user-assigned identities (names) in effect on a VM or scale set."""
        return list(self.arm_resource(name)["effective_user_assigned"])

    def change_identities_by_hand(
        self, name: str, add: list[str] | None = None, remove: list[str] | None = None
    ) -> None:
        """Attach/detach user-assigned identities at once, behind ARM's back."""
        self._call(
            "POST", f"/arm/resources/{name}/identities", {"add": add or [], "remove": remove or []}
        )

    def set_arm_operator(self, identity: str, identities: list[str]) -> None:
        """Which identities `identity` may assign through ARM ("*": all)."""
        self._call("PUT", f"/arm/operators/{identity}", {"identities": identities})
