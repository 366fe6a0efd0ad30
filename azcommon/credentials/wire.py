"""Reading the IMDS-style token answers that NMI and IMDS give: numbers that may be JSON strings."""

from __future__ import annotations

import math
from typing import Any

import requests


def number_of(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def expires_on_of(token: dict[str, Any], now: float) -> float | None:
    """Epoch seconds of expiry: `expires_on` (number or numeric string), else now + `expires_in`."""
    expires_on = number_of(token.get("expires_on"))
    if expires_on is not None:
        return expires_on
    expires_in = number_of(token.get("expires_in"))
    return now + expires_in if expires_in is not None else None


def describe_network_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (refused or reset)"
    return f"request failed ({type(exc).__name__})"
