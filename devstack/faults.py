"""Fault and latency injection rules, and request counters, shared by every server."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

ENDPOINTS = ("keyvault", "token", "imds", "nmi", "arm")


@dataclass(frozen=True)
class Fault:
    """What to do to matching requests: wait, then maybe drop, throttle or fail them; with
    `count` > 0, only to the next `count` matching requests (then the rule is spent)."""

    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_503: float = 0.0
    drop: float = 0.0
    retry_after: int = 1
    count: int = 0


@dataclass(frozen=True)
class Outcome:
    latency_s: float
    action: str  # "pass" | "drop" | "429" | "503"
    retry_after: int


def _rate(raw: dict[str, Any], name: str) -> float:
    value = float(raw.get(name) or 0.0)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return value


def parse_fault(raw: dict[str, Any]) -> tuple[str, str, Fault]:
    """(vault, endpoint, fault) from the admin API's JSON; raises ValueError on bad input.
    ARM requests are keyed by subscription: `subscription` is accepted in place of `vault`."""
    vault = str(raw.get("vault") or raw.get("subscription") or "*").lower()
    endpoint = str(raw.get("endpoint") or "*").lower()
    if endpoint != "*" and endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of *, {', '.join(ENDPOINTS)}; got {endpoint!r}")
    latency = float(raw.get("latency_ms") or 0.0)
    retry_after = int(raw.get("retry_after") or 1)
    count = int(raw.get("count") or 0)
    if latency < 0 or retry_after < 0 or count < 0:
        raise ValueError("latency_ms, retry_after and count must not be negative")
    fault = Fault(
        latency_ms=latency,
        rate_429=_rate(raw, "rate_429"),
        rate_503=_rate(raw, "rate_503"),
        drop=_rate(raw, "drop"),
        retry_after=retry_after,
        count=count,
    )
    return vault, endpoint, fault


class FaultTable:
    """Rules keyed by (vault or "*", endpoint or "*"); the most specific rule wins.

    Requests that are not for a vault (token, IMDS, NMI) only match vault "*" rules; ARM
    requests match their subscription's rules as a vault's requests match the vault's."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rules: dict[tuple[str, str], Fault] = {}
        self._left: dict[tuple[str, str], int] = {}  # rules with a count: matches left
        self._lock = threading.Lock()
        self._rng = rng or random.Random()

    def set(self, vault: str, endpoint: str, fault: Fault) -> None:
        with self._lock:
            self._rules[(vault, endpoint)] = fault
            self._left.pop((vault, endpoint), None)
            if fault.count:
                self._left[(vault, endpoint)] = fault.count

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._left.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"vault": v, "endpoint": e, **asdict(f)} for (v, e), f in self._rules.items()]

    def decide(self, vault: str | None, endpoint: str) -> Outcome:
        with self._lock:
            if not self._rules:
                return Outcome(0.0, "pass", 0)
            keys = [("*", endpoint), ("*", "*")]
            if vault is not None:
                keys = [(vault.lower(), endpoint), *keys[:1], (vault.lower(), "*"), keys[1]]
            key = next((k for k in keys if k in self._rules), None)
            if key is None:
                return Outcome(0.0, "pass", 0)
            fault = self._rules[key]
            if key in self._left:
                self._left[key] -= 1
                if self._left[key] <= 0:  # spent: this is the rule's last request
                    del self._left[key]
                    del self._rules[key]
            roll = self._rng.random()
        action = "pass"
        if roll < fault.drop:
            action = "drop"
        elif roll < fault.drop + fault.rate_429:
            action = "429"
        elif roll < fault.drop + fault.rate_429 + fault.rate_503:
            action = "503"
        return Outcome(fault.latency_ms / 1000.0, action, fault.retry_after)


class Counters:
    """Requests counted by (vault, operation, status); status 0 means the connection was
    dropped without a response."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str | None, str, int]] = Counter()
        self._lock = threading.Lock()

    def record(self, vault: str | None, operation: str, status: int) -> None:
        with self._lock:
            self._counts[(vault, operation, status)] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(
                self._counts.items(), key=lambda kv: (kv[0][0] or "", kv[0][1], kv[0][2])
            )
        return [
            {"vault": v, "operation": op, "status": status, "count": n}
            for (v, op, status), n in items
        ]
