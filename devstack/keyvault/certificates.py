"""Certificates: get (with the policy), policy, list, versions, create (self-signed, through a
pending operation as the SDK's poller expects) and import (PEM, base64 PEM or PKCS#12)."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from devstack import crypto
from devstack.httpbase import Request, Response, json_response
from devstack.keyvault.common import (
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
from devstack.world import CertVersion

CLIENT_AND_SERVER_AUTH = ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]


def policy(base: str, name: str, v: CertVersion) -> dict[str, Any]:
    """The certificate policy JSON for one version, as the service derives it."""
    action = "AutoRenew" if v.issuer_name == "Self" else "EmailContacts"
    key_usage = (
        ["digitalSignature", "keyEncipherment"]
        if v.key_props.get("kty") == "RSA"
        else ["digitalSignature"]
    )
    return {
        "id": f"{base}/certificates/{name}/policy",
        "key_props": dict(v.key_props),
        "secret_props": {"contentType": v.content_type},
        "x509_props": {
            "subject": v.subject,
            "ekus": list(CLIENT_AND_SERVER_AUTH),
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


def policy_fields(
    body: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str | None]:
    """(key_props, x509_props, issuer, content type) of a create or import request's policy."""
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


class Certificates(Family):
    """The certificates of one vault (their keys and secrets live in the other families)."""

    category = "certificates"

    def operations(self) -> dict[str, Operation]:
        return {
            "certificate.get": Operation("get", self._get),
            "certificate.list": Operation("list", self._list),
            "certificate.versions": Operation("list", self._versions),
            "certificate.create": Operation("create", self._create),
            "certificate.import": Operation("import", self._import),
            "certificate.pending": Operation("get", self._get_pending),
            "certificate.policy": Operation("get", self._get_policy),
        }

    def bundle(self, name: str, v: CertVersion) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{self.base}/certificates/{name}/{v.version}",
            "kid": f"{self.base}/keys/{name}/{v.version}",
            "sid": f"{self.base}/secrets/{name}/{v.version}",
            "x5t": crypto.thumbprint(v.cert),
            "cer": base64.b64encode(crypto.cert_der(v.cert)).decode("ascii"),
            "attributes": attributes(v),
            "policy": policy(self.base, name, v),
        }
        return decorate(body, v)

    def _item(self, name: str, v: CertVersion, versioned: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{self.base}/certificates/{name}" + (f"/{v.version}" if versioned else ""),
            "x5t": crypto.thumbprint(v.cert),
            "attributes": attributes(v),
        }
        return decorate(body, v)

    def _get(self, request: Request, target: Target) -> Response:
        name, v = self.world.certificate(self.vault_name, target.name, target.version or None)
        return json_response(200, self.bundle(name, v))

    def _get_policy(self, request: Request, target: Target) -> Response:
        name, v = self.world.certificate(self.vault_name, target.name)
        return json_response(200, policy(self.base, name, v))

    def _list(self, request: Request, target: Target) -> Response:
        with self.world.locked():
            latest = [
                (h.name, h.versions[-1])
                for h in self.world.vault(self.vault_name).certificates.values()
            ]
        return self.page(
            request, "/certificates", latest, lambda nv: self._item(nv[0], nv[1], False)
        )

    def _versions(self, request: Request, target: Target) -> Response:
        history = self.world.certificate_history(self.vault_name, target.name)
        with self.world.locked():
            versions = list(history.versions)
        return self.page(
            request,
            f"/certificates/{history.name}/versions",
            versions,
            lambda v: self._item(history.name, v, True),
        )

    def _create(self, request: Request, target: Target) -> Response:
        body = json_body(request)
        key_props, x509_props, issuer, content_type = policy_fields(body)
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
        enabled = enabled_of(body)
        v = self.world.add_certificate(
            self.vault_name,
            target.name,
            key,
            [cert],
            content_type or crypto.PKCS12_CONTENT_TYPE,
            exportable=bool(key_props.get("exportable", True)),
            enabled=True if enabled is None else enabled,
            tags=tags_of(body),
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

    def _import(self, request: Request, target: Target) -> Response:
        body = json_body(request)
        value = body.get("value")
        if not isinstance(value, str) or not value:
            raise bad_parameter("Property 'value' is required.")
        password = body.get("pwd")
        if password is not None and not isinstance(password, str):
            raise bad_parameter("Property 'pwd' must be a string.")
        _, _, _, content_type = policy_fields(body)
        key, chain = parse_certificate_content(value, password)
        enabled = enabled_of(body)
        v = self.world.add_certificate(
            self.vault_name,
            target.name,
            key,
            chain,
            content_type or crypto.PKCS12_CONTENT_TYPE,
            issuer_name="Unknown",
            enabled=True if enabled is None else enabled,
            tags=tags_of(body),
        )
        name, _ = self.world.certificate(self.vault_name, target.name, v.version)
        return json_response(200, self.bundle(name, v))
