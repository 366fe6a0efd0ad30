"""Pod identity: tokens for a pod's Azure identity from the node's NMI (`/host/token/`).

NMI answers 404 (or 503 with Retry-After) while MIC is still assigning the identity, which takes
tens of seconds on real clusters, and may hold a request for a while itself. So this client
retries within one deadline and then reports a non-final error, letting kubelet retry the mount.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from azure.core.credentials import AccessTokenInfo

from azcommon.credentials.base import Clock, KvCredential, TokenRequestHook, no_hook, token_info
from azcommon.credentials.polling import Deadline, Monotonic, Sleep, poll_token_endpoint
from azcommon.credentials.wire import expires_on_of
from azcommon.errors import InvalidArgument, KvError, PermissionDenied, Unavailable

RETRIED_STATUSES = frozenset({404, 429, 503})


class NmiCredential(KvCredential):
    kind = "nmi"

    def __init__(
        self,
        *,
        session: requests.Session,
        port: int,
        pod_namespace: str,
        pod_name: str,
        resource: str,
        deadline: float,
        request_timeout: float,
        clock: Clock = time.time,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = time.sleep,
        on_token_request: TokenRequestHook = no_hook,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(resource=resource, clock=clock, on_token_request=on_token_request)
        self._session = session
        self._address = f"{host}:{port}"
        self._url = f"http://{self._address}/host/token/"
        self._namespace = pod_namespace
        self._pod = pod_name
        self._deadline = deadline
        self._timeout = request_timeout
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def description(self) -> str:
        return f"pod identity of {self._namespace}/{self._pod} (NMI {self._address})"

    def _request(
        self, resource: str, claims: str | None, patience: float | None
    ) -> AccessTokenInfo:
        # Empty headers are left out so that NMI itself says which one is missing.
        headers = {k: v for k, v in (("podns", self._namespace), ("podname", self._pod)) if v}
        seconds = self._deadline if patience is None else min(self._deadline, patience)
        deadline = Deadline(seconds, self._monotonic, self._sleep)

        def send(remaining: float) -> requests.Response:
            # NMI may hold the request while it waits for MIC: read for as long as we may wait.
            return self._session.get(
                self._url,
                params={"resource": resource},
                headers=headers,
                timeout=(min(self._timeout, remaining), remaining),
                allow_redirects=False,
            )

        answer = poll_token_endpoint(
            send,
            deadline,
            retried=RETRIED_STATUSES.__contains__,
            on_status=lambda status: self._hook(self.kind, status),
            now_epoch=self._clock,
        )
        if answer.response is None:
            raise Unavailable(
                f"{self.description}: no token after {deadline.elapsed():.0f}s "
                f"({deadline.attempts} attempts); last answer {answer.last}. Check that NMI runs "
                "on this node and that MIC has assigned an identity to the pod "
                "(AzureIdentityBinding selector matches the pod's aadpodidbinding label)"
            )
        if answer.response.status_code != 200:
            raise self._final_error(answer.response.status_code, answer.last)
        return self._parse(answer.response)

    def _final_error(self, status: int, last: str) -> KvError:
        text = f"{self.description}: NMI answered {last}"
        if status == 403:
            return PermissionDenied(f"{text}. NMI could not get a token for the pod's identity")
        if status == 400:
            return InvalidArgument(f"{text}. The request lacked the pod name/namespace or resource")
        return Unavailable(text)

    def _parse(self, response: requests.Response) -> AccessTokenInfo:
        try:
            body: Any = response.json()
        except ValueError:
            raise Unavailable(
                f"{self.description}: NMI answered 200 with a body that is not JSON"
            ) from None
        token = body.get("token") if isinstance(body, dict) else None
        client_id = body.get("clientid") if isinstance(body, dict) else None
        if isinstance(token, list) and token:
            token = token[0]  # several tokens (SP with auxiliary tenants): the primary one
        access = token.get("access_token") if isinstance(token, dict) else None
        if (
            not isinstance(access, str)
            or not access
            or not isinstance(client_id, str)
            or not client_id
        ):
            raise Unavailable(
                f"{self.description}: NMI answered 200 without the expected token and clientid"
            )
        assert isinstance(token, dict)
        expires_on = expires_on_of(token, self._clock())
        if expires_on is None or expires_on <= self._clock():
            raise Unavailable(
                f"{self.description}: NMI answered a token without a valid future expires_on"
            )
        self._client_id = client_id
        return token_info(access, expires_on)
