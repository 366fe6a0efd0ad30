"""What every Key Vault object family shares: the path grammar, the error shape, request-body
checks, the attribute and paging JSON, and the `Family` base that a family module extends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeVar

from devstack.httpbase import Request, Response, json_response, kv_error
from devstack.world import Version, World

KEYVAULT_RESOURCE = "https://vault.azure.net"
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
MAX_PAGE = 25

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


def attributes(v: Version, extra: dict[str, Any] | None = None) -> dict[str, Any]:
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


def decorate(body: dict[str, Any], v: Version) -> dict[str, Any]:
    if v.tags:
        body["tags"] = dict(v.tags)
    if v.managed:
        body["managed"] = True
    return body


def json_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise bad_parameter("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object.")
    return body


def tags_of(body: dict[str, Any]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict):
        raise bad_parameter("Property 'tags' must be an object of strings.")
    return {str(k): str(v) for k, v in tags.items()}


def enabled_of(body: dict[str, Any]) -> bool | None:
    attrs = body.get("attributes")
    if attrs is None:
        return None
    if not isinstance(attrs, dict):
        raise bad_parameter("Property 'attributes' must be an object.")
    enabled = attrs.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise bad_parameter("Property 'attributes.enabled' must be a boolean.")
    return enabled


Handler = Callable[[Request, Target], Response]


class Operation(NamedTuple):
    """One data-plane operation: the access-policy permission it needs and its handler."""

    permission: str
    handler: Handler


class Family:
    """One object family of one vault (secrets, keys or certificates): its operations, each
    keyed by the name `parse_target` gives it, and the JSON it renders."""

    category: ClassVar[str]  # the access-policy category: secrets | keys | certificates

    def __init__(self, world: World, vault_name: str) -> None:
        self.world = world
        self.vault_name = vault_name

    @property
    def base(self) -> str:
        return self.world.vault(self.vault_name).base_url

    def operations(self) -> dict[str, Operation]:
        raise NotImplementedError

    def page(
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
