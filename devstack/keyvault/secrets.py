"""Secrets: get (refused when disabled), list, versions, set, update, delete and the deleted
secret, with the real service's bundle JSON (a certificate's backing secret carries `kid`)."""

from __future__ import annotations

from typing import Any

from devstack.httpbase import Request, Response, json_response
from devstack.keyvault.common import (
    RECOVERABLE_DAYS,
    ApiError,
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
from devstack.world import MAX_SECRET_BYTES, History, SecretVersion


class Secrets(Family):
    """The secrets of one vault."""

    category = "secrets"

    def operations(self) -> dict[str, Operation]:
        return {
            "secret.get": Operation("get", self._get),
            "secret.list": Operation("list", self._list),
            "secret.versions": Operation("list", self._versions),
            "secret.set": Operation("set", self._set),
            "secret.update": Operation("set", self._update),
            "secret.delete": Operation("delete", self._delete),
            "secret.deleted": Operation("list", self._get_deleted),
        }

    def bundle(self, name: str, v: SecretVersion, with_value: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if with_value:
            body["value"] = v.value
        if v.content_type is not None:
            body["contentType"] = v.content_type
        body["id"] = f"{self.base}/secrets/{name}/{v.version}"
        body["attributes"] = attributes(v)
        if v.backs_certificate:
            body["kid"] = f"{self.base}/keys/{name}/{v.version}"
        return decorate(body, v)

    def _item(self, name: str, v: SecretVersion, versioned: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{self.base}/secrets/{name}" + (f"/{v.version}" if versioned else ""),
            "attributes": attributes(v),
        }
        if v.content_type is not None:
            body["contentType"] = v.content_type
        return decorate(body, v)

    def _get(self, request: Request, target: Target) -> Response:
        name, v = self.world.secret(self.vault_name, target.name, target.version or None)
        if not v.enabled:
            raise ApiError(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                inner="SecretDisabled",
            )
        return json_response(200, self.bundle(name, v))

    def _list(self, request: Request, target: Target) -> Response:
        with self.world.locked():
            latest = [
                (h.name, h.versions[-1]) for h in self.world.vault(self.vault_name).secrets.values()
            ]
        return self.page(request, "/secrets", latest, lambda nv: self._item(nv[0], nv[1], False))

    def _versions(self, request: Request, target: Target) -> Response:
        history = self.world.secret_history(self.vault_name, target.name)
        with self.world.locked():
            versions = list(history.versions)
        return self.page(
            request,
            f"/secrets/{history.name}/versions",
            versions,
            lambda v: self._item(history.name, v, True),
        )

    def _set(self, request: Request, target: Target) -> Response:
        body = json_body(request)
        value = body.get("value")
        if not isinstance(value, str):
            raise bad_parameter("Property 'value' is required and must be a string.")
        if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise bad_parameter(
                f"The secret value exceeds the maximum size of {MAX_SECRET_BYTES} bytes."
            )
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("Property 'contentType' must be a string.")
        enabled = enabled_of(body)
        v = self.world.set_secret(
            self.vault_name,
            target.name,
            value,
            content_type,
            enabled=True if enabled is None else enabled,
            tags=tags_of(body),
        )
        name, _ = self.world.secret(self.vault_name, target.name, v.version)
        return json_response(200, self.bundle(name, v))

    def _update(self, request: Request, target: Target) -> Response:
        body = json_body(request)
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("Property 'contentType' must be a string.")
        name, v = self.world.update_secret(
            self.vault_name,
            target.name,
            target.version or None,
            enabled=enabled_of(body),
            content_type=content_type,
            tags=tags_of(body),
        )
        return json_response(200, self.bundle(name, v, with_value=False))

    def _deleted_bundle(self, history: History[SecretVersion], deleted_on: int) -> dict[str, Any]:
        body = self.bundle(history.name, history.versions[-1], with_value=False)
        body.update(
            {
                "recoveryId": f"{self.base}/deletedsecrets/{history.name}",
                "deletedDate": deleted_on,
                "scheduledPurgeDate": deleted_on + RECOVERABLE_DAYS * 86400,
            }
        )
        return body

    def _delete(self, request: Request, target: Target) -> Response:
        history = self.world.delete_secret(self.vault_name, target.name)
        _, deleted_on = self.world.deleted_secret(self.vault_name, target.name)
        return json_response(200, self._deleted_bundle(history, deleted_on))

    def _get_deleted(self, request: Request, target: Target) -> Response:
        history, deleted_on = self.world.deleted_secret(self.vault_name, target.name)
        return json_response(200, self._deleted_bundle(history, deleted_on))
