"""Credentials that talk to Entra ID through azure-identity: service principal (client secret)
and workload identity (a Kubernetes service-account token as client assertion).

azure-identity does the protocol; this module gives it the volume's cloud (authority, CA trust)
and the shared HTTP session, and turns its errors into the driver's exception tree with hints an
operator can act on (AADSTS codes), never echoing a secret or token.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import requests
from azure.core.credentials import AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.identity import ClientAssertionCredential, ClientSecretCredential

from azcommon.cloud import KNOWN_CLOUDS, Cloud
from azcommon.credentials.base import Clock, KvCredential, TokenRequestHook, no_hook
from azcommon.credentials.polling import safe_body
from azcommon.errors import InvalidArgument, KvError, PermissionDenied, Unauthenticated, Unavailable
from azcommon.http import make_transport

# The audience of the service-account token that workload identity exchanges for Entra tokens.
WORKLOAD_IDENTITY_AUDIENCE = "api://AzureADTokenExchange"
_AADSTS = re.compile(r"AADSTS(\d+)")
_FEDERATION_HINT = (
    "check the identity's federated credential: issuer must be the cluster's service-account "
    "issuer URL, subject {subject}, audience " + WORKLOAD_IDENTITY_AUDIENCE
)
_HINTS = {
    "7000215": "the client secret is wrong: check clientsecret in the volume's secret reference",
    "7000222": "the client secret has expired: create a new one and update the volume's secret",
    "700016": "no application with this client id in the tenant: check clientid and tenantId",
    "90002": "the tenant does not exist: check tenantId",
    "900023": "the tenant id is not valid: check tenantId",
    "7000112": "the application is disabled in the tenant",
    "53003": "blocked by a Conditional Access policy",
    "500011": "the Key Vault resource is unknown in this tenant: check cloudName",
    "70021": _FEDERATION_HINT,
    "700211": _FEDERATION_HINT,
    "700212": _FEDERATION_HINT,
    "700213": _FEDERATION_HINT,
    "700024": (
        "the service-account token has expired: kubelet renews it only when the CSIDriver sets "
        "requiresRepublish: true"
    ),
}


def _is_known_cloud(cloud: Cloud) -> bool:
    return any(c.authority_host == cloud.authority_host for c in KNOWN_CLOUDS.values())


def map_identity_error(
    exc: Exception, description: str, authority: str, subject: str = ""
) -> KvError:
    """Our error for an azure-identity failure (the message carries no secret or token)."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return Unavailable(
            f"{description}: cannot reach Entra ID at {authority} ({type(exc).__name__})"
        )
    if isinstance(exc, ValueError):
        return InvalidArgument(f"{description}: {safe_body(str(exc))}")
    message = str(getattr(exc, "message", "") or exc)
    status = None
    if isinstance(exc, HttpResponseError) and exc.response is not None:
        status = exc.response.status_code
    if status is not None and (status == 429 or status >= 500):
        return Unavailable(f"{description}: Entra ID at {authority} answered HTTP {status}")
    match = _AADSTS.search(message)
    if match is None:
        kind = "rejected the request" if isinstance(exc, ClientAuthenticationError) else "failed"
        return PermissionDenied(f"{description}: Entra ID {kind}: {safe_body(message)}")
    code = match.group(1)
    detail = _first_sentence(message[match.end() :])
    hint = _HINTS.get(code, "").format(subject=subject or "system:serviceaccount:<ns>:<sa>")
    text = f"{description}: Entra ID refused the token request with AADSTS{code}"
    if detail:
        text += f" ({detail})"
    if hint:
        text += f"; {hint}"
    return PermissionDenied(text)


def _first_sentence(text: str) -> str:
    text = text.lstrip(": ").split("\n", 1)[0]
    end = text.find(". ")
    return safe_body(text[: end + 1] if end >= 0 else text)


def _hook_kwargs(hook: TokenRequestHook) -> dict[str, Any]:
    def on_response(response: PipelineResponse[Any, Any]) -> None:
        # azure-identity also fetches discovery documents; count only token requests.
        if response.http_request.url.split("?", 1)[0].rstrip("/").endswith("/token"):
            hook("aad", str(response.http_response.status_code))

    return {"raw_response_hook": on_response}


class _AadCredential(KvCredential):
    """Shared plumbing: call the wrapped azure-identity credential, map its errors."""

    kind = "aad"
    _inner: ClientSecretCredential | ClientAssertionCredential

    def __init__(
        self, *, cloud: Cloud, clock: Clock, on_token_request: TokenRequestHook, subject: str = ""
    ) -> None:
        super().__init__(
            resource=cloud.keyvault_resource, clock=clock, on_token_request=on_token_request
        )
        self._authority = cloud.authority_host
        self._subject = subject

    def _request(
        self, resource: str, claims: str | None, patience: float | None
    ) -> AccessTokenInfo:
        options: TokenRequestOptions = {}
        if claims:
            options["claims"] = claims
        try:
            return self._inner.get_token_info(resource + "/.default", options=options)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError, ValueError) as exc:
            if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
                self._hook(self.kind, "error")
            raise map_identity_error(
                exc, self.description, self._authority, self._subject
            ) from None

    def close(self) -> None:
        self._inner.close()


class ServicePrincipalCredential(_AadCredential):
    def __init__(
        self,
        *,
        session: requests.Session,
        cloud: Cloud,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        request_timeout: float,
        clock: Clock = time.time,
        on_token_request: TokenRequestHook = no_hook,
    ) -> None:
        super().__init__(cloud=cloud, clock=clock, on_token_request=on_token_request)
        self._tenant = tenant_id
        self._client_id = client_id
        try:
            self._inner = ClientSecretCredential(
                tenant_id,
                client_id,
                client_secret,
                authority=cloud.authority_host,
                transport=make_transport(session, request_timeout, cloud.ca_bundle),
                # Instance discovery asks the public cloud about the authority: useless (and
                # failing) for a private or sovereign authority the cloud config names.
                disable_instance_discovery=not _is_known_cloud(cloud),
                retry_total=2,
                **_hook_kwargs(on_token_request),
            )
        except ValueError as exc:
            raise InvalidArgument(f"{self.description}: {safe_body(str(exc))}") from None

    @property
    def description(self) -> str:
        return f"service principal {self._client_id} in tenant {self._tenant}"


class AssertionHolder:
    """The newest service-account token the engine has seen for one workload identity.

    kubelet republishes volumes with fresh tokens; the engine puts each one here and the
    credential reads it whenever Entra ID needs a new assertion.
    """

    def __init__(self, token: str = "", expiry: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._token = token
        self._expiry = expiry

    def update(self, token: str, expiry: float = 0.0) -> None:
        if not token:
            return
        with self._lock:
            # Publishes can race; never replace a token with one that expires earlier.
            if self._expiry and expiry and expiry < self._expiry:
                return
            self._token = token
            self._expiry = expiry

    def current(self) -> str:
        with self._lock:
            return self._token

    @property
    def expiry(self) -> float:
        with self._lock:
            return self._expiry


class WorkloadIdentityCredential(_AadCredential):
    def __init__(
        self,
        *,
        session: requests.Session,
        cloud: Cloud,
        tenant_id: str,
        client_id: str,
        namespace: str,
        service_account: str,
        assertion: AssertionHolder,
        request_timeout: float,
        clock: Clock = time.time,
        on_token_request: TokenRequestHook = no_hook,
    ) -> None:
        subject = f"system:serviceaccount:{namespace}:{service_account}"
        super().__init__(
            cloud=cloud, clock=clock, on_token_request=on_token_request, subject=subject
        )
        self._tenant = tenant_id
        self._client_id = client_id
        self.assertion = assertion
        try:
            self._inner = ClientAssertionCredential(
                tenant_id,
                client_id,
                self._assertion,
                authority=cloud.authority_host,
                transport=make_transport(session, request_timeout, cloud.ca_bundle),
                retry_total=2,
                **_hook_kwargs(on_token_request),
            )
        except ValueError as exc:
            raise InvalidArgument(f"{self.description}: {safe_body(str(exc))}") from None

    @property
    def description(self) -> str:
        return f"workload identity {self._client_id} in tenant {self._tenant} for {self._subject}"

    def _assertion(self) -> str:
        token = self.assertion.current()
        if not token:
            raise Unauthenticated(
                f"{self.description}: no service-account token for audience "
                f"{WORKLOAD_IDENTITY_AUDIENCE} (set tokenRequests on the CSIDriver)"
            )
        return token
