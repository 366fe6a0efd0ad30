"""Key Vault data-plane emulator for one vault: secrets, keys and certificates with versions,
the bearer challenge, access policies, and the real service's JSON bodies and error codes."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from devstack import crypto
from devstack.httpbase import Request, Response, Route, json_response, kv_error
from devstack.jwt import TokenError
from devstack.tokens import TokenIssuer
from devstack.world import (
    MAX_SECRET_BYTES,
    BadInput,
    CertVersion,
    History,
    KeyVersion,
    NotFound,
    SecretVersion,
    Version,
    World,
)

KEYVAULT_RESOURCE = "https://vault.azure.net"
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
MAX_PAGE = 25
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_API_VERSION = re.compile(r"^(\d+\.\d+|\d{4}-\d{2}-\d{2})(-preview(\.\d+)?)?$")
_NOT_FOUND_CODES = {
    "secret": "SecretNotFound",
    "key": "KeyNotFound",
    "certificate": "CertificateNotFound",
    "deleted secret": "SecretNotFound",
}

# operation -> (access-policy category, permission)
PERMISSIONS: dict[str, tuple[str, str]] = {
    "secret.get": ("secrets", "get"),
    "secret.list": ("secrets", "list"),
    "secret.versions": ("secrets", "list"),
    "secret.set": ("secrets", "set"),
    "secret.update": ("secrets", "set"),
    "secret.delete": ("secrets", "delete"),
    "secret.deleted": ("secrets", "list"),
    "key.get": ("keys", "get"),
    "key.list": ("keys", "list"),
    "key.versions": ("keys", "list"),
    "key.create": ("keys", "create"),
    "key.update": ("keys", "update"),
    "certificate.get": ("certificates", "get"),
    "certificate.list": ("certificates", "list"),
    "certificate.versions": ("certificates", "list"),
    "certificate.create": ("certificates", "create"),
    "certificate.import": ("certificates", "import"),
    "certificate.pending": ("certificates", "get"),
    "certificate.policy": ("certificates", "get"),
}

T = TypeVar("T")


class ApiError(Exception):
    """Raised inside a handler to answer with Key Vault's error shape."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.response = kv_error(status, code, message, inner)


def bad_parameter(message: str) -> ApiError:
    return ApiError(400, "BadParameter", message)


@dataclass(frozen=True)
class Target:
    """A parsed Key Vault path: /<collection>[/<name>[/<version or action>]]."""

    operation: str
    name: str = ""
    version: str = ""


def parse_target(method: str, path: str) -> Target | None:
    parts = path.split("/")[1:]
    if not parts or len(parts) > 3:
        return None
    collection, rest = parts[0].lower(), parts[1:]
    name = rest[0] if rest else ""
    tail = rest[1] if len(rest) > 1 else ""
    singular = {"secrets": "secret", "keys": "key", "certificates": "certificate"}.get(collection)
    if collection == "deletedsecrets" and len(rest) == 1 and method == "GET":
        return Target("secret.deleted", name)
    if singular is None:
        return None
    if not name:
        return Target(f"{singular}.list") if method == "GET" and len(rest) <= 1 else None
    if len(rest) == 1 and singular == "secret" and method in ("PUT", "DELETE"):
        return Target("secret.set" if method == "PUT" else "secret.delete", name)
    if tail.lower() == "versions" and method == "GET":
        return Target(f"{singular}.versions", name)
    if method == "POST" and singular == "key" and tail.lower() == "create":
        return Target("key.create", name)
    if singular == "certificate" and tail.lower() in ("create", "import") and method == "POST":
        return Target(f"certificate.{tail.lower()}", name)
    if singular == "certificate" and tail.lower() in ("pending", "policy") and method == "GET":
        return Target(f"certificate.{tail.lower()}", name)
    if method == "GET":
        return Target(f"{singular}.get", name, tail)
    if method == "PATCH" and singular in ("secret", "key"):
        return Target(f"{singular}.update", name, tail)
    return None


def _attributes(v: Version, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"enabled": v.enabled}
    if v.not_before is not None:
        attrs["nbf"] = v.not_before
    if v.expires is not None:
        attrs["exp"] = v.expires
    attrs.update(
        {
            "created": v.created,
            "updated": v.updated,
            "recoveryLevel": RECOVERY_LEVEL,
            "recoverableDays": RECOVERABLE_DAYS,
        }
    )
    attrs.update(extra or {})
    return attrs


def _decorate(body: dict[str, Any], v: Version) -> dict[str, Any]:
    if v.tags:
        body["tags"] = dict(v.tags)
    if v.managed:
        body["managed"] = True
    return body


class KeyVaultApp:
    def __init__(self, world: World, issuer: TokenIssuer, vault_name: str) -> None:
        self.world = world
        self.issuer = issuer
        self.vault_name = vault_name

    @property
    def base(self) -> str:
        return self.world.vault(self.vault_name).base_url

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
            self._authorize(claims, target.operation)
            return self._dispatch(request, target)
        except ApiError as exc:
            return exc.response
        except NotFound as exc:
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

    def _authorize(self, claims: dict[str, Any], operation: str) -> None:
        category, permission = PERMISSIONS[operation]
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

    # --- dispatch --------------------------------------------------------------------------

    def _dispatch(self, request: Request, target: Target) -> Response:
        handlers: dict[str, Callable[[Request, Target], Response]] = {
            "secret.get": self._get_secret,
            "secret.list": self._list_secrets,
            "secret.versions": self._secret_versions,
            "secret.set": self._set_secret,
            "secret.update": self._update_secret,
            "secret.delete": self._delete_secret,
            "secret.deleted": self._get_deleted_secret,
            "key.get": self._get_key,
            "key.list": self._list_keys,
            "key.versions": self._key_versions,
            "key.create": self._create_key,
            "key.update": self._update_key,
            "certificate.get": self._get_certificate,
            "certificate.list": self._list_certificates,
            "certificate.versions": self._certificate_versions,
            "certificate.create": self._create_certificate,
            "certificate.import": self._import_certificate,
            "certificate.pending": self._get_pending,
            "certificate.policy": self._get_policy,
        }
        return handlers[target.operation](request, target)

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError:
            raise bad_parameter("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise bad_parameter("The request body must be a JSON object.")
        return body

    def _page(
        self, request: Request, path: str, items: Sequence[T], render: Callable[[T], dict[str, Any]]
    ) -> Response:
        try:
            size = int(request.query.get("maxresults") or MAX_PAGE)
            skip = int(request.query.get("$skiptoken") or 0)
        except ValueError:
            raise bad_parameter("maxresults and $skiptoken must be integers.") from None
        if not 1 <= size <= MAX_PAGE or skip < 0:
            raise bad_parameter(f"maxresults must be between 1 and {MAX_PAGE}.")
        page = [render(item) for item in items[skip : skip + size]]
        next_link = None
        if skip + size < len(items):
            version = request.query.get("api-version", "")
            next_link = f"{self.base}{path}?api-version={version}&$skiptoken={skip + size}&maxresults={size}"
        return json_response(200, {"value": page, "nextLink": next_link})

    @staticmethod
    def _tags(body: dict[str, Any]) -> dict[str, str] | None:
        tags = body.get("tags")
        if tags is None:
            return None
        if not isinstance(tags, dict):
            raise bad_parameter("Property 'tags' must be an object of strings.")
        return {str(k): str(v) for k, v in tags.items()}

    @staticmethod
    def _enabled(body: dict[str, Any]) -> bool | None:
        attrs = body.get("attributes")
        if attrs is None:
            return None
        if not isinstance(attrs, dict):
            raise bad_parameter("Property 'attributes' must be an object.")
        enabled = attrs.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise bad_parameter("Property 'attributes.enabled' must be a boolean.")
        return enabled

    # --- secrets ---------------------------------------------------------------------------

    def secret_bundle(self, name: str, v: SecretVersion, with_value: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if with_value:
            body["value"] = v.value
        if v.content_type is not None:
            body["contentType"] = v.content_type
        body["id"] = f"{self.base}/secrets/{name}/{v.version}"
        body["attributes"] = _attributes(v)
        if v.backs_certificate:
            body["kid"] = f"{self.base}/keys/{name}/{v.version}"
        return _decorate(body, v)

    def _secret_item(self, name: str, v: SecretVersion, versioned: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{self.base}/secrets/{name}" + (f"/{v.version}" if versioned else ""),
            "attributes": _attributes(v),
        }
        if v.content_type is not None:
            body["contentType"] = v.content_type
        return _decorate(body, v)

    def _get_secret(self, request: Request, target: Target) -> Response:
        name, v = self.world.secret(self.vault_name, target.name, target.version or None)
        if not v.enabled:
            raise ApiError(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                inner="SecretDisabled",
            )
        return json_response(200, self.secret_bundle(name, v))

    def _list_secrets(self, request: Request, target: Target) -> Response:
        with self.world.locked():
            latest = [
                (h.name, h.versions[-1]) for h in self.world.vault(self.vault_name).secrets.values()
            ]
        return self._page(
            request, "/secrets", latest, lambda nv: self._secret_item(nv[0], nv[1], False)
        )

    def _secret_versions(self, request: Request, target: Target) -> Response:
        history = self.world.secret_history(self.vault_name, target.name)
        with self.world.locked():
            versions = list(history.versions)
        return self._page(
            request,
            f"/secrets/{history.name}/versions",
            versions,
            lambda v: self._secret_item(history.name, v, True),
        )

    def _set_secret(self, request: Request, target: Target) -> Response:
        body = self._body(request)
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
        enabled = self._enabled(body)
        v = self.world.set_secret(
            self.vault_name,
            target.name,
            value,
            content_type,
            enabled=True if enabled is None else enabled,
            tags=self._tags(body),
        )
        name, _ = self.world.secret(self.vault_name, target.name, v.version)
        return json_response(200, self.secret_bundle(name, v))

    def _update_secret(self, request: Request, target: Target) -> Response:
        body = self._body(request)
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("Property 'contentType' must be a string.")
        name, v = self.world.update_secret(
            self.vault_name,
            target.name,
            target.version or None,
            enabled=self._enabled(body),
            content_type=content_type,
            tags=self._tags(body),
        )
        return json_response(200, self.secret_bundle(name, v, with_value=False))

    def _deleted_bundle(self, history: History[SecretVersion], deleted_on: int) -> dict[str, Any]:
        body = self.secret_bundle(history.name, history.versions[-1], with_value=False)
        body.update(
            {
                "recoveryId": f"{self.base}/deletedsecrets/{history.name}",
                "deletedDate": deleted_on,
                "scheduledPurgeDate": deleted_on + RECOVERABLE_DAYS * 86400,
            }
        )
        return body

    def _delete_secret(self, request: Request, target: Target) -> Response:
        history = self.world.delete_secret(self.vault_name, target.name)
        _, deleted_on = self.world.deleted_secret(self.vault_name, target.name)
        return json_response(200, self._deleted_bundle(history, deleted_on))

    def _get_deleted_secret(self, request: Request, target: Target) -> Response:
        history, deleted_on = self.world.deleted_secret(self.vault_name, target.name)
        return json_response(200, self._deleted_bundle(history, deleted_on))

    # --- keys ------------------------------------------------------------------------------

    def key_bundle(self, name: str, v: KeyVersion) -> dict[str, Any]:
        assert v.key is not None
        body: dict[str, Any] = {
            "key": crypto.public_jwk(v.key, f"{self.base}/keys/{name}/{v.version}"),
            "attributes": _attributes(v, {"exportable": v.exportable}),
        }
        return _decorate(body, v)

    def _key_item(self, name: str, v: KeyVersion, versioned: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kid": f"{self.base}/keys/{name}" + (f"/{v.version}" if versioned else ""),
            "attributes": _attributes(v, {"exportable": v.exportable}),
        }
        return _decorate(body, v)

    def _get_key(self, request: Request, target: Target) -> Response:
        name, v = self.world.key(self.vault_name, target.name, target.version or None)
        return json_response(200, self.key_bundle(name, v))

    def _list_keys(self, request: Request, target: Target) -> Response:
        with self.world.locked():
            latest = [
                (h.name, h.versions[-1]) for h in self.world.vault(self.vault_name).keys.values()
            ]
        return self._page(request, "/keys", latest, lambda nv: self._key_item(nv[0], nv[1], False))

    def _key_versions(self, request: Request, target: Target) -> Response:
        history = self.world.key_history(self.vault_name, target.name)
        with self.world.locked():
            versions = list(history.versions)
        return self._page(
            request,
            f"/keys/{history.name}/versions",
            versions,
            lambda v: self._key_item(history.name, v, True),
        )

    def _create_key(self, request: Request, target: Target) -> Response:
        body = self._body(request)
        kty = body.get("kty")
        if not isinstance(kty, str) or not kty:
            raise bad_parameter("Property 'kty' is required.")
        if kty not in ("RSA", "RSA-HSM", "EC", "EC-HSM"):
            raise bad_parameter(f"The key type '{kty}' is not supported by this vault.")
        size = body.get("key_size") or 2048
        curve = body.get("crv") or "P-256"
        if not isinstance(size, int) or not isinstance(curve, str):
            raise bad_parameter("Properties 'key_size' and 'crv' must be an integer and a string.")
        try:
            key = crypto.generate_key(kty, size, curve)
        except crypto.CryptoInputError as exc:
            raise bad_parameter(str(exc)) from None
        enabled = self._enabled(body)
        v = self.world.add_key(
            self.vault_name,
            target.name,
            key,
            enabled=True if enabled is None else enabled,
            tags=self._tags(body),
            exportable=bool((body.get("attributes") or {}).get("exportable", False)),
        )
        name, _ = self.world.key(self.vault_name, target.name, v.version)
        return json_response(200, self.key_bundle(name, v))

    def _update_key(self, request: Request, target: Target) -> Response:
        body = self._body(request)
        enabled = self._enabled(body)
        tags = self._tags(body)
        with self.world.locked():
            name, v = self.world.key(self.vault_name, target.name, target.version or None)
            if enabled is not None:
                v.enabled = enabled
            if tags is not None:
                v.tags = tags
        return json_response(200, self.key_bundle(name, v))

    # --- certificates ----------------------------------------------------------------------

    def policy(self, name: str, v: CertVersion) -> dict[str, Any]:
        action = "AutoRenew" if v.issuer_name == "Self" else "EmailContacts"
        key_usage = (
            ["digitalSignature", "keyEncipherment"]
            if v.key_props.get("kty") == "RSA"
            else ["digitalSignature"]
        )
        return {
            "id": f"{self.base}/certificates/{name}/policy",
            "key_props": dict(v.key_props),
            "secret_props": {"contentType": v.content_type},
            "x509_props": {
                "subject": v.subject,
                "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
                "key_usage": key_usage,
                "validity_months": v.validity_months,
                "basic_constraints": {"ca": False},
            },
            "lifetime_actions": [
                {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": action}}
            ],
            "issuer": {"name": v.issuer_name},
            "attributes": {"enabled": True, "created": v.created, "updated": v.updated},
        }

    def certificate_bundle(self, name: str, v: CertVersion) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{self.base}/certificates/{name}/{v.version}",
            "kid": f"{self.base}/keys/{name}/{v.version}",
            "sid": f"{self.base}/secrets/{name}/{v.version}",
            "x5t": crypto.thumbprint(v.cert),
            "cer": base64.b64encode(crypto.cert_der(v.cert)).decode("ascii"),
            "attributes": _attributes(v),
            "policy": self.policy(name, v),
        }
        return _decorate(body, v)

    def _certificate_item(self, name: str, v: CertVersion, versioned: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{self.base}/certificates/{name}" + (f"/{v.version}" if versioned else ""),
            "x5t": crypto.thumbprint(v.cert),
            "attributes": _attributes(v),
        }
        return _decorate(body, v)

    def _get_certificate(self, request: Request, target: Target) -> Response:
        name, v = self.world.certificate(self.vault_name, target.name, target.version or None)
        return json_response(200, self.certificate_bundle(name, v))

    def _get_policy(self, request: Request, target: Target) -> Response:
        name, v = self.world.certificate(self.vault_name, target.name)
        return json_response(200, self.policy(name, v))

    def _list_certificates(self, request: Request, target: Target) -> Response:
        with self.world.locked():
            latest = [
                (h.name, h.versions[-1])
                for h in self.world.vault(self.vault_name).certificates.values()
            ]
        return self._page(
            request, "/certificates", latest, lambda nv: self._certificate_item(nv[0], nv[1], False)
        )

    def _certificate_versions(self, request: Request, target: Target) -> Response:
        history = self.world.certificate_history(self.vault_name, target.name)
        with self.world.locked():
            versions = list(history.versions)
        return self._page(
            request,
            f"/certificates/{history.name}/versions",
            versions,
            lambda v: self._certificate_item(history.name, v, True),
        )

    @staticmethod
    def _policy_fields(
        body: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str | None]:
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise bad_parameter("Property 'policy' must be an object.")
        parts = []
        for field_name in ("key_props", "x509_props", "issuer"):
            part = policy.get(field_name) or {}
            if not isinstance(part, dict):
                raise bad_parameter(f"Property 'policy.{field_name}' must be an object.")
            parts.append(part)
        secret_props = policy.get("secret_props") or {}
        content_type = secret_props.get("contentType") if isinstance(secret_props, dict) else None
        if content_type is not None and content_type not in (
            crypto.PEM_CONTENT_TYPE,
            crypto.PKCS12_CONTENT_TYPE,
        ):
            raise bad_parameter(
                f"The content type '{content_type}' is not supported; use "
                f"{crypto.PEM_CONTENT_TYPE} or {crypto.PKCS12_CONTENT_TYPE}."
            )
        return parts[0], parts[1], parts[2], content_type

    def _create_certificate(self, request: Request, target: Target) -> Response:
        body = self._body(request)
        key_props, x509_props, issuer, content_type = self._policy_fields(body)
        if (issuer.get("name") or "Self") != "Self":
            raise bad_parameter(
                f"Issuer '{issuer.get('name')}' is not available here; only 'Self' is supported."
            )
        subject = x509_props.get("subject")
        if not isinstance(subject, str) or not subject:
            raise bad_parameter("Property 'policy.x509_props.subject' is required.")
        months = x509_props.get("validity_months") or 12
        if not isinstance(months, int) or not 1 <= months <= 1200:
            raise bad_parameter("Property 'policy.x509_props.validity_months' is out of range.")
        try:
            key = crypto.generate_key(
                str(key_props.get("kty") or "RSA"),
                int(key_props.get("key_size") or 2048),
                str(key_props.get("crv") or "P-256"),
            )
            cert = crypto.make_certificate(subject, key, validity_days=months * 30)
        except (crypto.CryptoInputError, ValueError) as exc:
            raise bad_parameter(f"The certificate policy is invalid: {exc}") from None
        enabled = self._enabled(body)
        v = self.world.add_certificate(
            self.vault_name,
            target.name,
            key,
            [cert],
            content_type or crypto.PKCS12_CONTENT_TYPE,
            exportable=bool(key_props.get("exportable", True)),
            enabled=True if enabled is None else enabled,
            tags=self._tags(body),
            validity_months=months,
        )
        name, _ = self.world.certificate(self.vault_name, target.name, v.version)
        operation = {
            "id": f"{self.base}/certificates/{name}/pending",
            "issuer": {"name": "Self"},
            "csr": base64.b64encode(b"").decode(),
            "cancellation_requested": False,
            "status": "completed",
            "status_details": "",
            "target": f"{self.base}/certificates/{name}/{v.version}",
            "request_id": uuid.uuid4().hex,
        }
        with self.world.locked():
            self.world.vault(self.vault_name).pending[name.lower()] = operation
        # The certificate is ready at once, but the first answer says "inProgress" as the real
        # service does: the SDK's poller only fetches the certificate after polling once.
        initial = {**operation, "status": "inProgress"}
        initial.pop("target")
        location = (
            f"{self.base}/certificates/{name}/pending?api-version={request.query['api-version']}"
        )
        return json_response(202, initial, headers=[("Location", location), ("Retry-After", "0")])

    def _get_pending(self, request: Request, target: Target) -> Response:
        self.world.certificate_history(self.vault_name, target.name)
        with self.world.locked():
            operation = self.world.vault(self.vault_name).pending.get(target.name.lower())
        if operation is None:
            raise ApiError(
                404,
                "PendingCertificateNotFound",
                f"Pending certificate not found: {target.name}",
            )
        return json_response(200, operation)

    def _import_certificate(self, request: Request, target: Target) -> Response:
        body = self._body(request)
        value = body.get("value")
        if not isinstance(value, str) or not value:
            raise bad_parameter("Property 'value' is required.")
        password = body.get("pwd")
        if password is not None and not isinstance(password, str):
            raise bad_parameter("Property 'pwd' must be a string.")
        _, _, _, content_type = self._policy_fields(body)
        key, chain = parse_certificate_content(value, password)
        enabled = self._enabled(body)
        v = self.world.add_certificate(
            self.vault_name,
            target.name,
            key,
            chain,
            content_type or crypto.PKCS12_CONTENT_TYPE,
            issuer_name="Unknown",
            enabled=True if enabled is None else enabled,
            tags=self._tags(body),
        )
        name, _ = self.world.certificate(self.vault_name, target.name, v.version)
        return json_response(200, self.certificate_bundle(name, v))


def parse_certificate_content(
    value: str, password: str | None
) -> tuple[crypto.PrivateKey, list[Any]]:
    """Import content: PEM text, base64 of PEM text (what the SDK sends), or base64 PKCS#12."""
    if value.lstrip().startswith("-----BEGIN"):
        return crypto.parse_pem_bundle(value)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_parameter("The certificate content is neither PEM nor base64.") from None
    if raw.lstrip().startswith(b"-----BEGIN"):
        return crypto.parse_pem_bundle(raw.decode("ascii", errors="replace"))
    return crypto.parse_pfx(raw, password)
