"""The token cache's timing rules, with a clock the test moves (the fetches are counted)."""

from __future__ import annotations

import contextlib
import threading
import time

from podidentity.crds import AzureIdentity, IdentityType, Meta
from podidentity.nmi.tokens import Token, TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def identity(name: str, client_id: str = "cid") -> AzureIdentity:
    return AzureIdentity(Meta("apps", name), IdentityType.USER_ASSIGNED_MSI, client_id)


def test_a_token_due_for_refresh_is_served_while_one_background_fetch_replaces_it() -> None:
    clock = Clock()
    fetched: list[int] = []
    release = threading.Event()

    def fetch(who: AzureIdentity, resource: str) -> Token:
        if fetched:
            release.wait(10)  # the refresh is slow: callers must not wait for it
        fetched.append(1)
        return Token(f"t{len(fetched)}", int(clock.now + 3600), int(clock.now), resource, "cid")

    cache = TokenCache(fetch, margin=300, clock=clock)
    assert cache.get(identity("a"), "r").access_token == "t1"
    clock.now += 3600 - 200  # inside the refresh margin, still valid
    assert [cache.get(identity("a"), "r").access_token for _ in range(5)] == ["t1"] * 5
    release.set()
    deadline = time.monotonic() + 10
    while cache.get(identity("a"), "r").access_token != "t2":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(fetched) == 2  # one refresh for all the callers


def test_an_expired_token_is_never_served_and_failures_are_not_cached() -> None:
    clock = Clock()
    calls: list[str] = []

    def fetch(who: AzureIdentity, resource: str) -> Token:
        calls.append(who.meta.name)
        if len(calls) == 2:
            raise RuntimeError("IMDS down")
        return Token(f"t{len(calls)}", int(clock.now + 600), int(clock.now), resource, "cid")

    cache = TokenCache(fetch, margin=300, clock=clock)
    cache.get(identity("a"), "r")
    clock.now += 700
    with contextlib.suppress(RuntimeError):
        cache.get(identity("a"), "r")
    assert cache.get(identity("a"), "r").access_token == "t3"


def test_identities_with_the_same_client_id_never_share_a_token() -> None:
    clock = Clock()
    seen: list[str] = []

    def fetch(who: AzureIdentity, resource: str) -> Token:
        seen.append(who.meta.name)
        return Token(who.meta.name, int(clock.now + 3600), int(clock.now), resource, "cid")

    cache = TokenCache(fetch, clock=clock)
    assert cache.get(identity("a"), "r").access_token == "a"
    assert cache.get(identity("b"), "r").access_token == "b"
    assert cache.get(identity("a"), "r2").access_token == "a"
    assert seen == ["a", "b", "a"]
