"""What every object entry has, however the objects are listed: a name, a type, a version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from azcommon.errors import InvalidArgument
from driver.model import ObjectSpec, ObjectType
from driver.spec.keys import quote

_OBJECT_NAME = re.compile(r"[A-Za-z0-9-]{1,127}")  # Key Vault's own rule for object names
_VERSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
TYPE_NAMES = ", ".join(t.value for t in ObjectType)
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:/@+-]{1,512}")


@dataclass(frozen=True)
class Draft:
    """One object before its path is checked against the others."""

    spec: ObjectSpec
    label: str  # e.g. 'object 2 ("db-password")'


def check_object_name(name: str, where: str) -> None:
    if not name:
        raise InvalidArgument(f"{where}: the object name is empty")
    if not _OBJECT_NAME.fullmatch(name):
        raise InvalidArgument(
            f"{where}: {quote(name)} is not a valid Key Vault object name "
            "(1 to 127 letters, digits and hyphens)"
        )


def object_type(text: str, where: str) -> ObjectType:
    value = text.strip().lower()
    if not value:
        raise InvalidArgument(f"{where}: the object type is empty (use one of {TYPE_NAMES})")
    try:
        return ObjectType(value)
    except ValueError:
        hint = ' (did you mean "cert"?)' if value in ("certificate", "certificates") else ""
        raise InvalidArgument(
            f"{where}: unknown object type {quote(text)}; use one of {TYPE_NAMES}{hint}"
        ) from None


def version(text: str, where: str) -> str:
    value = text.strip()
    if value.lower() in ("", "latest"):
        return ""
    if not _VERSION.fullmatch(value):
        raise InvalidArgument(f"{where}: {quote(value)} is not a valid object version")
    return value


def parse_tags(text: str, where: str) -> tuple[str, ...]:
    """`key=value` pairs separated by commas (a selection's tags), normalised and sorted."""
    tags: set[str] = set()
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not _TAG_KEY.fullmatch(key.strip()):
            raise InvalidArgument(f"{where} entry {quote(pair)} is not key=value (e.g. env=prod)")
        tags.add(f"{key.strip()}={value.strip()}")
    return tuple(sorted(tags))
