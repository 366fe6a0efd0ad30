"""Retry pacing for the token endpoints on the node (NMI, IMDS): exponential backoff with jitter,
`Retry-After` honoured, everything bounded by one deadline."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import requests

from azcommon.credentials.wire import describe_network_error
from azcommon.retry import Deadline, Monotonic, Sleep
from azcommon.retry import parse_retry_after as retry_after_seconds

__all__ = [
    "Answer",
    "Deadline",
    "Monotonic",
    "Sleep",
    "poll_token_endpoint",
    "retry_after_seconds",
    "safe_body",
]


# Text that looks like a credential: JWTs, and long unbroken runs of token alphabet.
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.?[\w-]*")
_TOKEN_FIELD = re.compile(
    r'("?(?:access_token|refresh_token|token|client_secret|assertion)"?\s*[:=]\s*)"?[^",\s}]*"?',
    re.IGNORECASE,
)
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_=.~-]{40,}")
MAX_BODY_IN_MESSAGE = 200


def safe_body(text: str) -> str:
    """A short, token-free excerpt of an error body for a message."""
    text = _JWT.sub("<redacted>", text)
    text = _TOKEN_FIELD.sub(r"\1<redacted>", text)
    text = _LONG_RUN.sub("<redacted>", text)
    text = " ".join(text.split())
    if len(text) > MAX_BODY_IN_MESSAGE:
        text = text[: MAX_BODY_IN_MESSAGE - 3] + "..."
    return text


@dataclass(frozen=True)
class Answer:
    """One exchange with a token endpoint: the response, or a description of no answer."""

    response: requests.Response | None
    last: str  # "HTTP 404: <scrubbed body>" or a network error, for messages


def poll_token_endpoint(
    send: Callable[[float], requests.Response],
    deadline: Deadline,
    *,
    retried: Callable[[int], bool],
    on_status: Callable[[str], None],
    now_epoch: Callable[[], float],
) -> Answer:
    """Ask until a 200 or a final status comes back, or the deadline passes.

    `send(remaining_seconds)` makes one request. Network errors and `retried` statuses are asked
    again with backoff (honouring Retry-After); the returned Answer carries the 200 or final
    response, or `response=None` when the deadline passed, with the last answer described."""
    last = "no answer"
    while True:
        retry_after: float | None = None
        try:
            response = send(max(0.1, deadline.remaining()))
        except requests.RequestException as exc:
            on_status("error")
            last = describe_network_error(exc)
        else:
            on_status(str(response.status_code))
            body = safe_body(response.text) if response.status_code != 200 else ""
            last = f"HTTP {response.status_code}" + (f": {body}" if body else "")
            if response.status_code == 200 or not retried(response.status_code):
                return Answer(response, last)
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), now_epoch())
        if not deadline.wait(retry_after):
            return Answer(None, last)
