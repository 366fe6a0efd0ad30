"""The Key Vault object types, one module each."""

from __future__ import annotations

from collections.abc import Mapping

from driver.keyvault.types.base import ObjectKind
from driver.keyvault.types.cert import CERT
from driver.keyvault.types.key import KEY
from driver.keyvault.types.secret import SECRET
from driver.model import ObjectType

KINDS: tuple[ObjectKind, ...] = (SECRET, KEY, CERT)
BY_TYPE: Mapping[ObjectType, ObjectKind] = {k.type: k for k in KINDS}
# Spelled in messages such as "objectFormat applies only to objectType secret".
TYPES_WITH_OPTIONS: tuple[str, ...] = tuple(k.type.value for k in KINDS if k.takes_options)


def kind_of(object_type: ObjectType) -> ObjectKind:
    """The module of `object_type` (every `ObjectType` has exactly one)."""
    return BY_TYPE[object_type]
