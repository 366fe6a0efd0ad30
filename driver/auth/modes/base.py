"""What one identity mode says about itself, and the inputs its parser reads.

A mode is one module in this package holding one `IdentityModeModule`: how a volume chooses it,
how its settings are read and validated, how its credential is built and keyed for sharing, and
what rotation needs from it. `registry.py` lists them; nothing else branches on the mode.

Modes read volume attributes through the `Attributes` protocol (the spec parser's case-folded
key map satisfies it), so this package does not depend on the parser.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import requests
from azure.core.credentials import TokenCredential

from azcommon.cloud import Cloud
from azcommon.credentials.base import Clock, KvCredential, TokenRequestHook
from azcommon.credentials.polling import Monotonic, Sleep
from azcommon.errors import InvalidArgument
from driver.auth.vm_policy import VmIdentityPolicy
from driver.config import Settings
from driver.model import AuthMaterial, IdentityMode, IdentitySpec, PodInfo, VolumeSpec

_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class Attributes(Protocol):
    """A volume's attributes (or secrets), keys matched case-insensitively."""

    def get(self, key: str) -> str:
        """The value, stripped; "" when absent."""
        ...

    def given(self, key: str) -> bool: ...

    def name(self, key: str) -> str:
        """The key as the user spelled it (for messages)."""
        ...

    def flag(self, key: str) -> bool:
        """A "true"/"false" attribute ("" is false); anything else is an error."""
        ...

    def shown(self, key: str) -> str:
        """The (non-secret) value quoted and truncated for a message."""
        ...

    def starting_with(self, prefix: str) -> list[str]:
        """The (folded) keys that start with `prefix`."""
        ...


@dataclass(frozen=True)
class IdentityInputs:
    """Everything a mode's parser may read, gathered once by the spec parser."""

    attrs: Attributes
    secrets: Attributes
    pod: PodInfo | None  # None when the pod keys were bad (already reported)
    # Service-account tokens by audience: (token, expiry epoch seconds).
    tokens: dict[str, tuple[str, float]] = field(repr=False)
    nmi_port: int
    warnings: list[str]


@dataclass(frozen=True)
class BuildContext:
    """What the credential provider hands a mode to build a credential."""

    session: requests.Session  # node-local traffic (NMI, IMDS): never through a proxy
    settings: Settings
    clock: Clock
    monotonic: Monotonic
    sleep: Sleep
    on_token_request: TokenRequestHook
    imds_deadline: float
    # The operator's rule for the node's VM identities; None: every pod may use every one.
    vm_policy: VmIdentityPolicy | None = None
    # Traffic to Entra ID (through the HTTPS proxy when one is configured); None: `session`.
    azure_session: requests.Session | None = None

    @property
    def entra_session(self) -> requests.Session:
        return self.azure_session or self.session


Digest = Callable[[str], str]  # a peppered digest of a secret value, for identity keys


class IdentityModeModule(ABC):
    """One identity mode: parse, validate, build, key, and what rotation needs."""

    mode: IdentityMode
    # The volume attributes (lower case) this mode reads; the parser knows them from here.
    keys: frozenset[str] = frozenset()
    # Shown in "no identity mode is chosen: set one of ..." (in registry order).
    hint: str
    # Rotation cannot authenticate without the secret inputs kept in memory.
    needs_stored_auth: bool = False
    # Volumes of one Azure identity share a rotation check, but each must still get its own
    # token to prove the identity is still its own.
    proves_per_volume: bool = False

    @abstractmethod
    def chosen(self, attrs: Attributes, secrets: Attributes) -> str | None:
        """How the volume chose this mode (for "more than one mode" messages), or None."""

    def unused(self, inputs: IdentityInputs) -> None:
        """Check this mode's settings when another mode is chosen (may warn or raise)."""
        return None  # most modes have no settings outside their own choice

    @abstractmethod
    def parse(self, inputs: IdentityInputs) -> tuple[IdentitySpec, AuthMaterial]:
        """The identity and its secret inputs; raises `InvalidArgument` naming the key."""

    @abstractmethod
    def validate(self, spec: VolumeSpec, auth: AuthMaterial) -> None:
        """Everything the mode needs is present (before any network call)."""

    @abstractmethod
    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial, digest: Digest) -> str:
        """A string naming exactly one identity (and, for secrets, one secret value)."""

    def authorize(self, spec: VolumeSpec, ctx: BuildContext) -> None:
        """Raise PERMISSION_DENIED when node policy forbids this volume its identity."""
        return None  # most identities prove themselves to Entra ID or NMI

    @abstractmethod
    def build(
        self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud, ctx: BuildContext
    ) -> KvCredential:
        """A new credential for the volume's identity."""

    def refresh(self, credential: KvCredential, auth: AuthMaterial) -> None:
        """Hand a shared credential the latest secret inputs (e.g. a republished token)."""
        return None  # most credentials keep what they were built with

    def principal(self, spec: VolumeSpec, identity_key: str, credential: TokenCredential) -> str:
        """Who Key Vault sees, so volumes of one Azure identity share a rotation check."""
        return identity_key


def check_client_id(value: str, where: str, *, shown: str = "") -> None:
    """A client id looks like one; `shown` is the quoted value, "" to keep it out of messages."""
    if not _CLIENT_ID.fullmatch(value):
        raise InvalidArgument(
            f"{where}{' ' + shown if shown else ''} is not a valid client id (expected a GUID)"
        )


def require(checks: list[tuple[bool, str]], what: str) -> None:
    """Raise naming every missing input of `what`."""
    missing = [name for ok, name in checks if not ok]
    if missing:
        raise InvalidArgument(f"{what} needs {', '.join(missing)}")
