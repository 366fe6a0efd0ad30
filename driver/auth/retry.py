"""Retry pacing for the token endpoints on the node (NMI, IMDS): exponential backoff with jitter,
`Retry-After` honoured, everything bounded by one deadline."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from driver.retry import parse_retry_after as retry_after_seconds

__all__ = ["Deadline", "Monotonic", "Sleep", "retry_after_seconds", "safe_body"]

Sleep = Callable[[float], None]
Monotonic = Callable[[], float]

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


@dataclass
class Deadline:
    """Paces attempts until `seconds` have passed since creation."""

    seconds: float
    monotonic: Monotonic
    sleep: Sleep
    base: float = 0.2
    cap: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0
    _start: float = -1.0

    def __post_init__(self) -> None:
        self._start = self.monotonic()

    def remaining(self) -> float:
        return self.seconds - (self.monotonic() - self._start)

    def elapsed(self) -> float:
        return self.monotonic() - self._start

    def wait(self, retry_after: float | None = None) -> bool:
        """Sleep before the next attempt; False (without sleeping) once the deadline has passed
        or when the server asks us to come back only after it."""
        self.attempts += 1
        remaining = self.remaining()
        if remaining <= 0 or (retry_after is not None and retry_after >= remaining):
            return False
        step = min(self.cap, self.base * 2 ** (self.attempts - 1))
        # "Equal jitter": at least half the step, so retries never bunch up at zero.
        delay = step / 2 + self.rng.uniform(0, step / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        # The last attempt happens at the deadline rather than one step before it.
        self.sleep(min(delay, remaining))
        return True
