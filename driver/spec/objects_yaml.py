"""The Azure secrets-store provider's `objects` attribute: YAML with an `array:` of objects,
each a mapping (or a YAML string holding one) of `objectName`, `objectType`, `objectVersion`,
`objectAlias`, `objectFormat`, `objectEncoding`, `filePermission`, `objectVersionHistory`."""

from __future__ import annotations

import re
from typing import Any

import yaml

from azcommon.errors import InvalidArgument
from driver.keyvault.types.registry import TYPES_WITH_OPTIONS, kind_of
from driver.model import DEFAULT_FILE_MODE, ObjectEncoding, ObjectFormat, ObjectSpec
from driver.spec.common import DIGITS
from driver.spec.items import Draft, check_object_name, object_type, version
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
    )
}


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
    check_object_name(name, f"{where} objectName")
    label = f"{where} ({quote(name)})"
    kind = object_type(fields.get("objectType", ""), f"{label} objectType")
    pinned = version(fields.get("objectVersion", ""), f"{label} objectVersion")
    alias = fields.get("objectAlias", "")
    if alias:
        alias = normalise_path(alias, f"{label} objectAlias")
    fmt, encoding = _options(fields, label, kind_of(kind).takes_options, kind.value)
    spec = ObjectSpec(
        name=name,
        type=kind,
        version=pinned,
        alias=alias,
        format=fmt,
        encoding=encoding,
        mode=_mode(fields.get("filePermission", ""), label),
        version_history=_history(fields.get("objectVersionHistory", ""), label),
        vault=vault,
    )
    return Draft(spec, label)


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
