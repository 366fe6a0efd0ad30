"""Exponential backoff with full jitter that honours a server's Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


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
class Backoff:
    base: float = 0.2
    cap: float = 10.0
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number `attempt` (1-based)."""
        if retry_after is not None:
            # The server knows best; a little jitter keeps many clients from returning together.
            return min(self.cap * 6, retry_after) + self.rng() * 0.1
        return float(self.rng() * min(self.cap, self.base * 2 ** (attempt - 1)))
