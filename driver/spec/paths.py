"""File paths inside the volume: each safe and relative, and no two objects on one file (or one
object's file where another needs a directory)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from azcommon.errors import InvalidArgument
from driver.model import ObjectSpec
from driver.spec.items import Draft
from driver.spec.keys import quote


def normalise_path(raw: str, where: str) -> str:
    """A safe relative file path inside the volume, normalised; raises naming `where`."""
    text = raw.strip()
    problem = ""
    if not text:
        problem = "is empty"
    elif any(ord(c) < 32 or ord(c) == 127 for c in text):
        problem = "contains a control character"
    elif any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        # YAML "\ud800" escapes decode to lone surrogates, which no file name can hold.
        problem = "contains a lone UTF-16 surrogate (not valid Unicode)"
    elif text.startswith("/"):
        problem = "must be a relative path, not absolute"
    elif ".." in text.split("/"):
        problem = 'must not contain a ".." component'
    if not problem:
        normal = posixpath.normpath(text)
        parts = normal.split("/")
        if normal == ".":
            problem = "is empty after normalisation"
        elif parts[0].startswith(".."):
            problem = 'must not start with ".." (reserved for the volume\'s ..data links)'
        elif any(len(p.encode("utf-8", "surrogatepass")) > 255 for p in parts):
            problem = "has a path component longer than 255 bytes"
        elif len(normal.encode("utf-8", "surrogatepass")) > 4000:
            problem = "is too long"
        else:
            return normal
    raise InvalidArgument(f"{where} {quote(raw)} {problem}")


def _files(spec: ObjectSpec) -> Iterable[str]:
    if spec.select is not None:
        # Known only once listed: the resolver refuses two objects on one file then.
        return ()
    if spec.cert_parts:
        return (f"{spec.path}.{p.part.value}" for p in spec.cert_parts)
    if spec.version_history:
        return (f"{spec.path}/{i}" for i in range(spec.version_history))
    return (spec.path,)


def check_paths(drafts: list[Draft], alias_key: str) -> None:
    owner: dict[str, Draft] = {}
    for draft in drafts:
        for path in _files(draft.spec):
            if path in owner:
                raise InvalidArgument(
                    f"{owner[path].label} and {draft.label} both write the file {quote(path)}; "
                    f"give them different {alias_key} values"
                )
            owner[path] = draft
    for path, draft in owner.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in owner:
                raise InvalidArgument(
                    f"{owner[parent].label} writes the file {quote(parent)} but {draft.label} "
                    f"needs it as a directory for {quote(path)}; change one {alias_key}"
                )
