"""Keys: get (the public JWK only), list, versions, create and update."""

from __future__ import annotations

from typing import Any

from devstack import crypto
from devstack.httpbase import Request, Response, json_response
from devstack.keyvault.common import (
    Family,
    Operation,
    Target,
    attributes,
    bad_parameter,
    decorate,
    enabled_of,
    json_body,
    tags_of,
)
from devstack.world import KeyVersion

KEY_TYPES = ("RSA", "RSA-HSM", "EC", "EC-HSM")


class Keys(Family):
    """The keys of one vault."""

    category = "keys"

    def operations(self) -> dict[str, Operation]:
        return {
            "key.get": Operation("get", self._get),
            "key.list": Operation("list", self._list),
            "key.versions": Operation("list", self._versions),
            "key.create": Operation("create", self._create),
            "key.update": Operation("update", self._update),
        }

    def bundle(self, name: str, v: KeyVersion) -> dict[str, Any]:
        assert v.key is not None
        body: dict[str, Any] = {
            "key": crypto.public_jwk(v.key, f"{self.base}/keys/{name}/{v.version}"),
            "attributes": attributes(v, {"exportable": v.exportable}),
        }
        return decorate(body, v)

    def _item(self, name: str, v: KeyVersion, versioned: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kid": f"{self.base}/keys/{name}" + (f"/{v.version}" if versioned else ""),
            "attributes": attributes(v, {"exportable": v.exportable}),
        }
        return decorate(body, v)

    def _get(self, request: Request, target: Target) -> Response:
        name, v = self.world.key(self.vault_name, target.name, target.version or None)
        return json_response(200, self.bundle(name, v))

    def _list(self, request: Request, target: Target) -> Response:
        with self.world.locked():
            latest = [
                (h.name, h.versions[-1]) for h in self.world.vault(self.vault_name).keys.values()
            ]
        return self.page(request, "/keys", latest, lambda nv: self._item(nv[0], nv[1], False))

    def _versions(self, request: Request, target: Target) -> Response:
        history = self.world.key_history(self.vault_name, target.name)
        with self.world.locked():
            versions = list(history.versions)
        return self.page(
            request,
            f"/keys/{history.name}/versions",
            versions,
            lambda v: self._item(history.name, v, True),
        )

    def _create(self, request: Request, target: Target) -> Response:
        body = json_body(request)
        kty = body.get("kty")
        if not isinstance(kty, str) or not kty:
            raise bad_parameter("Property 'kty' is required.")
        if kty not in KEY_TYPES:
            raise bad_parameter(f"The key type '{kty}' is not supported by this vault.")
        size = body.get("key_size") or 2048
        curve = body.get("crv") or "P-256"
        if not isinstance(size, int) or not isinstance(curve, str):
            raise bad_parameter("Properties 'key_size' and 'crv' must be an integer and a string.")
        try:
            key = crypto.generate_key(kty, size, curve)
        except crypto.CryptoInputError as exc:
            raise bad_parameter(str(exc)) from None
        enabled = enabled_of(body)
        v = self.world.add_key(
            self.vault_name,
            target.name,
            key,
            enabled=True if enabled is None else enabled,
            tags=tags_of(body),
            exportable=bool((body.get("attributes") or {}).get("exportable", False)),
        )
        name, _ = self.world.key(self.vault_name, target.name, v.version)
        return json_response(200, self.bundle(name, v))

    def _update(self, request: Request, target: Target) -> Response:
        body = json_body(request)
        enabled = enabled_of(body)
        tags = tags_of(body)
        with self.world.locked():
            name, v = self.world.key(self.vault_name, target.name, target.version or None)
            if enabled is not None:
                v.enabled = enabled
            if tags is not None:
                v.tags = tags
        return json_response(200, self.bundle(name, v))
