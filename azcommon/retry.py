"""Retry pacing shared by every client here: exponential backoff with jitter, a server's
Retry-After honoured, everything bounded by one deadline."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Sleep = Callable[[float], None]
Monotonic = Callable[[], float]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


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
