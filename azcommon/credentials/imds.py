"""VM managed identity: tokens from the instance metadata service (IMDS).

Our own small client instead of azure-identity's ManagedIdentityCredential, because that one
takes its endpoint from process-global environment variables; here the endpoint comes from the
volume's cloud, so volumes of different clouds (and the tests) never step on each other.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from azure.core.credentials import AccessTokenInfo

from azcommon.credentials.base import Clock, KvCredential, TokenRequestHook, no_hook, token_info
from azcommon.credentials.polling import Deadline, Monotonic, Sleep, poll_token_endpoint
from azcommon.credentials.wire import expires_on_of
from azcommon.errors import (
    FailedPrecondition,
    InvalidArgument,
    KvError,
    PermissionDenied,
    Unavailable,
)

API_VERSION = "2018-02-01"


def _retried(status: int) -> bool:
    # Azure's managed-identity retry guidance: 404 (IMDS updating), 410, 429 and 5xx.
    return status in (404, 410, 429) or status >= 500


class ImdsCredential(KvCredential):
    kind = "imds"

    def __init__(
        self,
        *,
        session: requests.Session,
        endpoint: str,
        client_id: str,
        resource: str,
        deadline: float,
        request_timeout: float,
        clock: Clock = time.time,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = time.sleep,
        on_token_request: TokenRequestHook = no_hook,
    ) -> None:
        super().__init__(resource=resource, clock=clock, on_token_request=on_token_request)
        self._session = session
        self._endpoint = endpoint
        self._requested_client_id = client_id
        self._client_id = client_id
        self._deadline = deadline
        self._timeout = request_timeout
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def description(self) -> str:
        who = (
            f"user-assigned identity {self._requested_client_id}"
            if self._requested_client_id
            else "system-assigned identity"
        )
        return f"VM managed {who} (IMDS {self._endpoint})"

    def _request(
        self, resource: str, claims: str | None, patience: float | None
    ) -> AccessTokenInfo:
        params = {"api-version": API_VERSION, "resource": resource}
        if self._requested_client_id:
            params["client_id"] = self._requested_client_id
        seconds = self._deadline if patience is None else min(self._deadline, patience)
        deadline = Deadline(seconds, self._monotonic, self._sleep)

        def send(remaining: float) -> requests.Response:
            return self._session.get(
                self._endpoint,
                params=params,
                headers={"Metadata": "true"},
                timeout=min(self._timeout, remaining),
                allow_redirects=False,
            )

        answer = poll_token_endpoint(
            send,
            deadline,
            retried=_retried,
            on_status=lambda status: self._hook(self.kind, status),
            now_epoch=self._clock,
        )
        if answer.response is None:
            raise Unavailable(
                f"{self.description}: no token after {deadline.elapsed():.0f}s "
                f"({deadline.attempts} attempts); last answer {answer.last}"
            )
        if answer.response.status_code != 200:
            raise self._final_error(answer.response.status_code, answer.response.text, answer.last)
        return self._parse(answer.response)

    def _final_error(self, status: int, body: str, last: str) -> KvError:
        text = f"{self.description}: IMDS answered {last}"
        if status == 400 and "identity not found" in body.lower():
            return FailedPrecondition(
                f"{text}. Assign the identity to this node's VM or VM scale set"
                + (f" (client id {self._requested_client_id})" if self._requested_client_id else "")
            )
        if status == 400:
            return InvalidArgument(text)
        if status in (401, 403):
            return PermissionDenied(text)
        return Unavailable(text)

    def _parse(self, response: requests.Response) -> AccessTokenInfo:
        try:
            body: Any = response.json()
        except ValueError:
            raise Unavailable(
                f"{self.description}: IMDS answered 200 with a body that is not JSON"
            ) from None
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise Unavailable(f"{self.description}: IMDS answered 200 without an access_token")
        expires_on = expires_on_of(body, self._clock())
        if expires_on is None or expires_on <= self._clock():
            raise Unavailable(f"{self.description}: IMDS answered a token without a valid expiry")
        client_id = body.get("client_id")
        if isinstance(client_id, str) and client_id:
            self._client_id = client_id
        return token_info(access, expires_on)
