"""Which identity the volume authenticates as.

The modes themselves (what chooses them, what they read and require) live one module each in
`driver.auth.modes`; this module gathers their shared inputs, makes sure exactly one is chosen,
and hands over to it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from azcommon.errors import InvalidArgument
from driver.auth.modes.base import IdentityInputs
from driver.auth.modes.registry import MODES
from driver.model import AuthMaterial, IdentityMode, IdentitySpec, PodInfo
from driver.spec.common import nmi_port
from driver.spec.keys import TOKENS, Keys, quote

# Which of several chosen modes wins, for the modes the azure/kv driver knew.
PRECEDENCE = (
    IdentityMode.POD_IDENTITY,
    IdentityMode.VM_MANAGED_IDENTITY,
    IdentityMode.SERVICE_PRINCIPAL,
)


def identity(
    attrs: Keys, secrets: Keys, pod: PodInfo | None, warnings: list[str]
) -> tuple[IdentitySpec, AuthMaterial]:
    if attrs.flag("useazuretokenproxy"):
        raise InvalidArgument(
            f"{attrs.name('useazuretokenproxy')} (AKS identity binding) is not supported; "
            "use workload identity (clientID) instead"
        )
    chosen = [(module, module.chosen(attrs, secrets)) for module in MODES]
    inputs = IdentityInputs(
        attrs=attrs,
        secrets=secrets,
        pod=pod,
        tokens=sa_tokens(attrs, secrets),
        nmi_port=nmi_port(attrs),
        warnings=warnings,
    )
    picked = [(module, label) for module, label in chosen if label is not None]
    if not picked:
        hints = [module.hint for module in MODES]
        raise InvalidArgument(
            f"no identity mode is chosen: set one of {', '.join(hints[:-1])}, or {hints[-1]}"
        )
    if len(picked) > 1 and any(module.mode not in PRECEDENCE for module, _ in picked):
        # Workload identity never existed in the azure/kv driver: there is no old behaviour to
        # keep, and guessing which identity a pod meant would be worse than asking.
        labels = [label for _, label in picked]
        raise InvalidArgument(
            f"more than one identity mode is chosen ({' and '.join(labels)}); choose exactly one"
        )
    # The azure/kv driver resolved these silently (pod identity, then the VM's identity, then a
    # service principal); pod specs written for it, e.g. with a leftover secretRef, keep working.
    picked.sort(key=lambda pair: PRECEDENCE.index(pair[0].mode) if len(picked) > 1 else 0)
    mode, winner = picked[0]
    for _, label in picked[1:]:
        warnings.append(
            f"{label} ignored: {winner} takes precedence (pod identity, then VM managed "
            "identity, then service principal, as in the azure/kv driver)"
        )
    for other in MODES:
        if all(other is not module for module, _ in picked):
            other.unused(inputs)
    return mode.parse(inputs)


def sa_tokens(attrs: Keys, secrets: Keys) -> dict[str, tuple[str, float]]:
    """Service-account tokens by audience; newer kubelets pass them in secrets, older in attributes."""
    merged: dict[str, tuple[str, float]] = {}
    for source, what in ((attrs, "volume attribute"), (secrets, "secret")):
        text = source.get(TOKENS)
        if text:
            for audience, token in _parse_tokens(text, f"{what} {source.name(TOKENS)}").items():
                merged.setdefault(audience, token)
    return merged


def _parse_tokens(text: str, where: str) -> dict[str, tuple[str, float]]:
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as error:
        # JSONDecodeError's message gives only a position, never the document.
        detail = error.msg if isinstance(error, json.JSONDecodeError) else "too deeply nested"
        raise InvalidArgument(f"{where} is not valid JSON ({detail})") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f'{where} must be a JSON object {{"<audience>": {{"token": ...}}}}')
    tokens: dict[str, tuple[str, float]] = {}
    for audience, entry in data.items():
        shown = quote(audience, 80)
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            raise InvalidArgument(f"{where}: the entry for audience {shown} has no token string")
        expiry = entry.get("expirationTimestamp", "")
        if not isinstance(expiry, str):
            raise InvalidArgument(
                f"{where}: expirationTimestamp for audience {shown} must be a string"
            )
        if entry["token"]:
            tokens[audience] = (entry["token"], _epoch(expiry))
    return tokens


def _epoch(timestamp: str) -> float:
    """RFC 3339 -> epoch seconds; 0 when absent or unreadable (the expiry is only a hint)."""
    try:
        moment = datetime.fromisoformat(timestamp.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        return 0.0
