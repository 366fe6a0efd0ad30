"""Case-insensitive access to a volume's attributes (or secrets), and the keys we know.

Keys are compared in ASCII lower case; the constants here are the canonical (lower-case)
spellings. Messages use the spelling the user wrote.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass

from azcommon.errors import InvalidArgument
from driver.auth.modes.registry import MODES

FLEX = "kubernetes.io/"
CSI = "csi.storage.k8s.io/"
FLEX_SECRET = "kubernetes.io/secret/"
TOKENS = "csi.storage.k8s.io/serviceaccount.tokens"

NAMES = ("keyvaultobjectnames", "keyvaultobjectname")
TYPES = ("keyvaultobjecttypes", "keyvaultobjecttype")
VERSIONS = ("keyvaultobjectversions", "keyvaultobjectversion")
ALIASES = ("keyvaultobjectaliases",)
# Per-entry lists of ours (one entry per name, like the others): the vault of each object ("" is
# keyvaultname) and whether it may be missing ("true"; "" is false)...
VAULTS = ("keyvaultobjectvaults",)
OPTIONALS = ("keyvaultobjectoptional",)
# ... and the tags a glob entry's objects must carry ("k=v,k2=v2"; "" for none).
TAGS = ("keyvaultobjecttags",)
LIST_KEYS = (*NAMES, *TYPES, *VERSIONS, *ALIASES, *VAULTS, *OPTIONALS, *TAGS)

OUR_KEYS = frozenset(
    {
        "keyvaultname",
        *LIST_KEYS,
        "tenantid",
        "nmiport",
        "cloudname",
        "cloudenvfilename",
        "objects",
        "fileformat",
        "useazuretokenproxy",
        # Accepted for compatibility and unused: the vault URL comes from its name and the cloud.
        "resourcegroup",
        "subscriptionid",
        # Set by the secrets-store CSI driver / its users; they mean nothing to us.
        "secretproviderclass",
        "providername",
    }
    # Each identity mode names the keys it reads.
    | {key for module in MODES for key in module.keys}
)
# Keys kubelet adds on its own. Pod keys are read; the rest carry no meaning for a tmpfs of files.
KUBELET_KEYS = frozenset(
    {
        f"{prefix}{suffix}"
        for prefix in (FLEX, CSI)
        for suffix in ("pod.name", "pod.namespace", "pod.uid", "serviceaccount.name")
    }
    | {
        TOKENS,
        CSI + "ephemeral",
        FLEX + "readwrite",
        FLEX + "fstype",
        FLEX + "fsgroup",
        FLEX + "mounterargs.fsgroup",
        FLEX + "pvorvolumename",
        FLEX + "mountsdir",
    }
)


# Words that make a key look like it holds a secret (matched in the lower-cased key). Volume
# attributes are no place for one: they sit in the pod spec for anyone who can read it.
_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "privatekey")
# Keys that contain such a word and hold nothing secret.
_NOT_SECRET = frozenset({"secretproviderclass"})


def looks_secret(key: str) -> bool:
    """Whether an attribute key looks like it carries a secret (its value is never logged)."""
    folded = key.lower()
    if folded in _NOT_SECRET:
        return False
    return folded.startswith(FLEX_SECRET) or any(word in folded for word in _SECRET_WORDS)


def secret_looking_attributes(attributes: Mapping[str, str]) -> list[str]:
    """CSI volume attribute keys that look like secrets, except the tokens key kubelet sets.

    CSI has `secrets` (nodePublishSecretRef) for credentials; a secret placed in the volume
    attributes instead is refused, before anything reads or logs it.
    """
    return sorted(k for k in attributes if looks_secret(k) and k.lower() != TOKENS)


def known(key: str) -> bool:
    """A key we read or deliberately ignore (anything else earns a warning)."""
    return key in OUR_KEYS or key in KUBELET_KEYS or key.startswith(FLEX_SECRET)


@dataclass
class Keys:
    """A string map with ASCII-case-folded keys, remembering how each key was spelled."""

    values: dict[str, str] = dataclasses.field(repr=False)  # may hold secrets and tokens
    names: dict[str, str]

    @classmethod
    def fold(cls, raw: Mapping[str, str], what: str) -> Keys:
        values: dict[str, str] = {}
        names: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidArgument(f"{what} keys and values must be strings")
            # ASCII folding only: str.lower() would also map e.g. the Kelvin sign onto "k".
            folded = key.lower() if key.isascii() else key
            if folded in values and values[folded] != value:
                raise InvalidArgument(
                    f"{what} {quote(folded, 64)} is given more than once (as "
                    f"{quote(names[folded], 64)} and {quote(key, 64)}) with different values"
                )
            values[folded] = value
            names[folded] = key
        return cls(values, names)

    def get(self, key: str) -> str:
        return self.values.get(key, "").strip()

    def given(self, key: str) -> bool:
        return bool(self.get(key))

    def name(self, key: str) -> str:
        """The key as the user spelled it (for messages)."""
        return self.names.get(key, key)

    def flag(self, key: str) -> bool:
        """A "true"/"false" value ("" is false); anything else is an error naming the key."""
        value = self.get(key).lower()
        if value in ("", "false"):
            return False
        if value == "true":
            return True
        raise InvalidArgument(
            f'{self.name(key)} must be "true" or "false", got {quote(self.get(key))}'
        )

    def shown(self, key: str) -> str:
        """The value for a message (never call it for a secret)."""
        return quote(self.get(key))

    def starting_with(self, prefix: str) -> list[str]:
        return [key for key in self.values if key.startswith(prefix)]

    def pick(self, keys: tuple[str, ...]) -> str | None:
        """Which of a plural key and its legacy singular is given (an error when both are)."""
        given = [k for k in keys if self.given(k)]
        if len(given) > 1:
            raise InvalidArgument(
                f"{self.name(given[0])} and {self.name(given[1])} are both given; use only "
                f"{self.name(keys[0])}"
            )
        return given[0] if given else None


def quote(value: str, limit: int = 40) -> str:
    """A non-secret value for a message: quoted, truncated, control characters escaped."""
    text = value if len(value) <= limit else value[:limit] + "..."
    # Lone surrogates stay escaped: a message must encode as UTF-8 (gRPC, logs, JSON replies).
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
