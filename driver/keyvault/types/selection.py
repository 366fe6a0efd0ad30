"""Selection: one object entry that stands for every object of its type a vault listing matches.

An entry selects by a glob on the name (`app-*`, `db-?`, `[ab]-*`; a prefix is `prefix*`),
by tags (`env=prod`: the object must carry every pair given), or both. Disabled objects are
never selected. Names are matched case-sensitively, in the case Key Vault lists them (Key Vault
names are case-insensitive, so `App-1` and `app-1` cannot both exist).

The listing is the type's list API (`names()` of its client: every page); what it yields is
expanded at publish and re-evaluated at every rotation cycle, so objects created later appear
and deleted or disabled ones disappear. An entry that matches more than its bound
(`maxMatches`, default `DEFAULT_MAX_MATCHES`) fails with an error naming the count and the
bound rather than silently writing some of them: which ones would otherwise depend on listing
order.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from azcommon.errors import FailedPrecondition
from driver.keyvault.types.base import Listed
from driver.model import ObjectSpec, Selector

# A glob over Key Vault's name alphabet: letters, digits, hyphens, and the glob characters.
GLOB = re.compile(r"[A-Za-z0-9*?\[\]!-]{1,127}")
GLOB_CHARS = frozenset("*?[")
# Key Vault's rule for object names. A listed name becomes a file path, so one that breaks it
# (a hostile or broken endpoint: "../x", "a/b") is never selected.
NAME = re.compile(r"[A-Za-z0-9-]{1,127}")


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def matches(selector: Selector, listed: Listed) -> bool:
    if listed.enabled is False or not NAME.fullmatch(listed.name):
        return False
    if selector.pattern and not fnmatch.fnmatchcase(listed.name, selector.pattern):
        return False
    for pair in selector.tags:
        key, _, value = pair.partition("=")
        if listed.tags.get(key) != value:
            return False
    return True


def select(entry: ObjectSpec, listing: Sequence[Listed], vault: str) -> list[str]:
    """The names `entry` selects from `listing`, sorted; raises past the entry's bound."""
    selector = entry.select
    assert selector is not None
    names = sorted({item.name for item in listing if matches(selector, item)})
    if len(names) > selector.max_matches:
        raise FailedPrecondition(
            f"{entry.type.value} selection {describe(selector)} in vault {vault} matches "
            f"{len(names)} objects, more than its bound of {selector.max_matches}; narrow the "
            "pattern or tags, or raise maxMatches"
        )
    return names


def expand(entry: ObjectSpec, names: Sequence[str]) -> list[ObjectSpec]:
    """The concrete objects of a selecting entry (an ordinary entry is itself)."""
    if entry.select is None:
        return [entry]
    return [entry.selected(name) for name in names]


def describe(selector: Selector) -> str:
    parts = []
    if selector.pattern:
        parts.append(f"objectNamePattern {selector.pattern!r}")
    if selector.tags:
        parts.append(f"objectTags {','.join(selector.tags)!r}")
    return " and ".join(parts)
