"""Turn a protobuf message into a JSON-able dict that is safe to log.

Fields whose descriptor options carry the CSI ``csi_secret`` extension (e.g. ``secrets`` in
every request that takes credentials) are replaced by ``"<redacted>"``, found from the
descriptors rather than from a list of names, so new secret fields are covered too. kubelet
also passes service-account tokens inside ``volume_context`` under
``csi.storage.k8s.io/serviceAccount.tokens``; that entry, and any entry whose key looks like a
secret (``clientsecret``, ``kubernetes.io/secret/...``, ``...password``; see
`driver.spec.keys.looks_secret`), is redacted in any string map.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from driver.csi.proto import csi_pb2
from driver.spec.keys import looks_secret

REDACTED = "<redacted>"
SERVICE_ACCOUNT_TOKENS_KEY = "csi.storage.k8s.io/serviceAccount.tokens"


def redacted(message: Message) -> dict[str, Any]:
    """Return the set fields of ``message`` as plain data, with every secret replaced."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        out[field.name] = REDACTED if is_secret(field) else _field_value(field, value)
    return out


def is_secret(field: FieldDescriptor) -> bool:
    """True when the field is declared with ``[(csi_secret) = true]``."""
    return bool(field.GetOptions().Extensions[csi_pb2.csi_secret])


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf 5 has only `label`; newer releases add `is_repeated` and deprecate `label`.
    flag = getattr(field, "is_repeated", None)
    if isinstance(flag, bool):
        return flag
    return bool(getattr(field, "label", None) == FieldDescriptor.LABEL_REPEATED)


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and bool(entry.GetOptions().map_entry)


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    if _is_map(field):
        return _map_value(field, value)
    if _is_repeated(field):
        return [_single_value(field, item) for item in value]
    return _single_value(field, value)


def _map_value(field: FieldDescriptor, value: Mapping[Any, Any]) -> dict[str, Any]:
    entry = field.message_type
    assert entry is not None  # callers check _is_map first
    value_field = entry.fields_by_name["value"]
    out: dict[str, Any] = {}
    for key in sorted(value):
        name = str(key)
        if name.lower() == SERVICE_ACCOUNT_TOKENS_KEY.lower() or looks_secret(name):
            out[name] = REDACTED
        else:
            out[name] = _single_value(value_field, value[key])
    return out


def _single_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return redacted(value)
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        known = field.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value
