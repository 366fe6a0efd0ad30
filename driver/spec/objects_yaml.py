"""The Azure secrets-store provider's `objects` attribute: YAML with an `array:` of objects,
each a mapping (or a YAML string holding one) of `objectName`, `objectType`, `objectVersion`,
`objectAlias`, `objectFormat`, `objectEncoding`, `filePermission`, `objectVersionHistory`.

Ours on top (what the upstream drivers never had):

- `optional: "true"`: a missing (404) or disabled object is skipped, not an error;
- `keyvaultName`: the vault of this object (default: the volume's `keyvaultName`);
- `objectNamePattern` (a glob such as `app-*`, or an `objectName` with glob characters) and/or
  `objectTags` (`env=prod,team=web`): select every matching object of the type; `objectAlias`
  is then the directory they land in; `maxMatches` bounds how many (default 100, at most 1000);
- `certParts` (`key:0600,crt,chain,bundle`): a certificate-backed secret split into
  `<path>.key`, `<path>.crt` (leaf), `<path>.chain` (intermediates to root) and
  `<path>.bundle` (all three), each with its own mode (default `filePermission`).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from azcommon.errors import InvalidArgument
from driver.keyvault.types.registry import TYPES_WITH_OPTIONS, kind_of
from driver.keyvault.types.selection import GLOB, is_glob
from driver.model import (
    DEFAULT_FILE_MODE,
    DEFAULT_MAX_MATCHES,
    CertPart,
    CertPartName,
    ObjectEncoding,
    ObjectFormat,
    ObjectSpec,
    ObjectType,
    Selector,
)
from driver.spec.common import DIGITS, check_vault
from driver.spec.items import Draft, check_object_name, object_type, parse_tags, version
from driver.spec.keys import Keys, quote
from driver.spec.paths import normalise_path

MAX_VERSION_HISTORY = 100

_OCTAL = re.compile(r"[0-7]{1,6}")
_FORMATS = " or ".join(f.value for f in ObjectFormat if f is not ObjectFormat.DEFAULT)
_ENCODINGS = ", ".join(e.value for e in ObjectEncoding)

# objects item fields, by lower-case spelling -> the spelling we report.
_ITEM_FIELDS = {
    f.lower(): f
    for f in (
        "objectName",
        "objectType",
        "objectVersion",
        "objectAlias",
        "objectFormat",
        "objectEncoding",
        "filePermission",
        "objectVersionHistory",
        "optional",
        "keyvaultName",
        "objectNamePattern",
        "objectTags",
        "maxMatches",
        "certParts",
    )
}
MAX_MATCHES = 1000


class _StringLoader(yaml.SafeLoader):
    """Safe YAML where every plain scalar stays a string.

    `filePermission: 0644` must not become the int 420, nor a numeric-looking version lose its
    leading zeros; we convert the few numeric fields ourselves.
    """


_StringLoader.yaml_implicit_resolvers = {}


def _load_yaml(text: str, where: str) -> object:
    try:
        return yaml.load(text, Loader=_StringLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidArgument(f"{where} is not valid YAML: {error.problem}{at}") from None
    except Exception:  # any failure of a parser fed user input means bad input
        raise InvalidArgument(f"{where} is not valid YAML") from None


def yaml_objects(attrs: Keys, vault: str, warnings: list[str] | None = None) -> list[Draft]:
    key = attrs.name("objects")
    root = _load_yaml(attrs.get("objects"), key)
    if not isinstance(root, dict):
        raise InvalidArgument(f"{key} must be a YAML mapping with an `array:` list of objects")
    items: object = None
    for field, value in root.items():
        if not isinstance(field, str) or field.lower() != "array":
            shown = quote(field) if isinstance(field, str) else "(not a string)"
            raise InvalidArgument(f"{key}: unknown field {shown}; only `array:` is allowed")
        items = value
    if items in (None, "") or items == []:
        raise InvalidArgument(f"{key}: `array:` lists no objects")
    if not isinstance(items, list):
        raise InvalidArgument(f"{key}: `array:` must be a list of objects")
    drafts = []
    for i, item in enumerate(items):
        where = f"{key} item {i + 1}"
        if isinstance(item, str):
            if not item.strip():
                raise InvalidArgument(f"{where} is empty")
            item = _load_yaml(item, where)
        if not isinstance(item, dict):
            raise InvalidArgument(f"{where} must be a mapping (objectName, objectType, ...)")
        drafts.append(_item(_fields(item, where, warnings), where, vault))
    return drafts


def _fields(item: dict[Any, Any], where: str, warnings: list[str] | None = None) -> dict[str, str]:
    """The item's fields under their canonical spelling, values stripped. Unknown fields are
    ignored with a warning, as the secrets-store provider ignores them (its SecretProviderClass
    files often carry fields of newer or other providers)."""
    fields: dict[str, str] = {}
    for raw_field, raw_value in item.items():
        if not isinstance(raw_field, str):
            raise InvalidArgument(f"{where}: field names must be strings")
        canonical = _ITEM_FIELDS.get(raw_field.lower()) if raw_field.isascii() else None
        if canonical is None:
            if warnings is not None:
                known = ", ".join(_ITEM_FIELDS.values())
                warnings.append(
                    f"{where}: unknown field {quote(raw_field)} ignored (known fields: {known})"
                )
            continue
        if canonical in fields:
            raise InvalidArgument(f"{where}: field {canonical} is given twice")
        if not isinstance(raw_value, str):
            raise InvalidArgument(f"{where}: {canonical} must be a string")
        fields[canonical] = raw_value.strip()
    return fields


def _item(fields: dict[str, str], where: str, vault: str) -> Draft:
    name = fields.get("objectName", "")
    selector = _selector(fields, where)
    if selector is None:
        check_object_name(name, f"{where} objectName")
    label = f"{where} ({quote(name or selector.pattern if selector else name)})"
    kind = object_type(fields.get("objectType", ""), f"{label} objectType")
    pinned = version(fields.get("objectVersion", ""), f"{label} objectVersion")
    alias = fields.get("objectAlias", "")
    if alias:
        alias = normalise_path(alias, f"{label} objectAlias")
    fmt, encoding = _options(fields, label, kind_of(kind).takes_options, kind.value)
    mode = _mode(fields.get("filePermission", ""), label)
    history = _history(fields.get("objectVersionHistory", ""), label)
    own_vault = fields.get("keyvaultName", "")
    if own_vault:
        check_vault(own_vault, f"{label} keyvaultName")
    if selector is not None and (pinned or history):
        raise InvalidArgument(
            f"{label}: a selection (objectNamePattern/objectTags) always reads the latest "
            "versions; remove objectVersion and objectVersionHistory"
        )
    parts = _cert_parts(fields.get("certParts", ""), label, mode)
    if parts and (kind is not ObjectType.SECRET or fmt is ObjectFormat.PFX or history):
        raise InvalidArgument(
            f"{label} certParts applies to objectType secret (a certificate-backed secret) "
            "without objectFormat pfx or objectVersionHistory"
        )
    spec = ObjectSpec(
        name=name if selector is None else "",
        type=kind,
        version=pinned,
        alias=alias,
        format=fmt,
        encoding=encoding,
        mode=mode,
        version_history=history,
        vault=own_vault or vault,
        optional=_flag(fields.get("optional", ""), f"{label} optional"),
        select=selector,
        cert_parts=parts,
    )
    return Draft(spec, label)


def _flag(text: str, where: str) -> bool:
    value = text.lower()
    if value in ("", "false"):
        return False
    if value == "true":
        return True
    raise InvalidArgument(f'{where} must be "true" or "false", got {quote(text)}')


def _selector(fields: dict[str, str], where: str) -> Selector | None:
    """The entry's selection, or None for an entry that names one object."""
    name = fields.get("objectName", "")
    pattern = fields.get("objectNamePattern", "")
    if name and is_glob(name):
        if pattern:
            raise InvalidArgument(f"{where}: give the glob in objectName or objectNamePattern")
        pattern = name
    elif pattern and name:
        raise InvalidArgument(
            f"{where}: objectName and objectNamePattern are both given; a selecting entry has"
            " no objectName"
        )
    tags_text = fields.get("objectTags", "")
    bound_text = fields.get("maxMatches", "")
    if not pattern and not tags_text:
        if bound_text:
            raise InvalidArgument(f"{where}: maxMatches applies only to a selecting entry")
        return None
    if pattern and not GLOB.fullmatch(pattern):
        raise InvalidArgument(
            f"{where} objectNamePattern {quote(pattern)} is not a name glob (letters, digits, "
            "hyphens and * ? [ ])"
        )
    tags = parse_tags(tags_text, f"{where} objectTags")
    bound = DEFAULT_MAX_MATCHES
    if bound_text:
        if not DIGITS.fullmatch(bound_text) or not 1 <= int(bound_text) <= MAX_MATCHES:
            raise InvalidArgument(
                f"{where} maxMatches {quote(bound_text)} is not an integer between 1 and "
                f"{MAX_MATCHES}"
            )
        bound = int(bound_text)
    return Selector(pattern=pattern, tags=tags, max_matches=bound)


def _cert_parts(text: str, label: str, default_mode: int) -> tuple[CertPart, ...]:
    parts: list[CertPart] = []
    for entry in filter(None, (p.strip() for p in text.split(","))):
        name, _, mode_text = entry.partition(":")
        try:
            part = CertPartName(name.strip().lower())
        except ValueError:
            known = ", ".join(p.value for p in CertPartName)
            raise InvalidArgument(
                f"{label} certParts: unknown part {quote(name)}; use {known}"
            ) from None
        if any(p.part is part for p in parts):
            raise InvalidArgument(f"{label} certParts: {part.value} is given twice")
        mode = _mode(mode_text.strip(), f"{label} certParts {part.value}") if mode_text else None
        parts.append(CertPart(part, default_mode if mode is None else mode))
    return tuple(parts)


def _options(
    fields: dict[str, str], label: str, applies: bool, kind: str
) -> tuple[ObjectFormat, ObjectEncoding]:
    try:
        fmt = ObjectFormat(fields.get("objectFormat", "").lower())
    except ValueError:
        raise InvalidArgument(
            f"{label} objectFormat: unknown format {quote(fields['objectFormat'])}; use {_FORMATS}"
        ) from None
    try:
        encoding = ObjectEncoding(fields.get("objectEncoding", "").lower() or ObjectEncoding.UTF8)
    except ValueError:
        raise InvalidArgument(
            f"{label} objectEncoding: unknown encoding {quote(fields['objectEncoding'])}; "
            f"use one of {_ENCODINGS}"
        ) from None
    if not applies:
        only = " or ".join(TYPES_WITH_OPTIONS)
        if fmt is not ObjectFormat.DEFAULT:
            raise InvalidArgument(
                f"{label} objectFormat applies only to objectType {only}, not {kind}"
            )
        if encoding is not ObjectEncoding.UTF8:
            raise InvalidArgument(
                f"{label} objectEncoding applies only to objectType {only}, not {kind}"
            )
    return fmt, encoding


def _mode(permission: str, label: str) -> int:
    if not permission:
        return DEFAULT_FILE_MODE
    digits = permission[2:] if permission.lower().startswith("0o") else permission
    if not _OCTAL.fullmatch(digits) or int(digits, 8) > 0o777:
        raise InvalidArgument(
            f"{label} filePermission {quote(permission)} is not an octal file mode "
            'between 0000 and 0777 (e.g. "0644")'
        )
    return int(digits, 8)


def _history(text: str, label: str) -> int:
    if not text:
        return 0
    if not DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_VERSION_HISTORY:
        raise InvalidArgument(
            f"{label} objectVersionHistory {quote(text)} is not an integer "
            f"between 1 and {MAX_VERSION_HISTORY}"
        )
    return int(text)
