"""A `VolumeSpec` read back from the state store, checked as a fresh publish would check it.

Records can be edited by hand or damaged; what they say is not trusted: every value goes through
the parser's own rules (so an alias `../../x` or a bad vault name in a record is refused exactly
as it would be in a volume's attributes), and the types are what the engine expects.
"""

from __future__ import annotations

from azcommon.errors import InvalidArgument
from driver.auth.modes.base import check_client_id
from driver.keyvault.types.selection import GLOB
from driver.model import (
    CertPart,
    FileContent,
    IdentityMode,
    IdentitySpec,
    ObjectEncoding,
    ObjectFormat,
    ObjectSpec,
    ObjectType,
    PodInfo,
    Selector,
    VolumeSpec,
)
from driver.spec import common
from driver.spec.items import Draft, check_object_name, version
from driver.spec.keys import CSI, Keys
from driver.spec.objects_yaml import MAX_MATCHES, MAX_VERSION_HISTORY
from driver.spec.paths import check_paths, normalise_path


def check_spec(spec: VolumeSpec) -> None:
    """Raises InvalidArgument naming the first field a fresh publish would refuse."""
    _types(spec)
    attrs = Keys.fold(
        {
            "keyvaultname": spec.vault_name,
            "tenantid": spec.tenant_id,
            "cloudname": spec.cloud_name,
            "nmiport": str(spec.identity.nmi_port),
            CSI + "pod.name": spec.pod.name,
            CSI + "pod.namespace": spec.pod.namespace,
            CSI + "pod.uid": spec.pod.uid,
            CSI + "serviceaccount.name": spec.pod.service_account,
        },
        "record",
    )
    _same("keyvaultname", common.vault_name(attrs), spec.vault_name)
    if spec.tenant_id:
        _same("tenantid", common.tenant(attrs), spec.tenant_id)
    if spec.cloud_name:
        _same("cloudname", common.cloud_name(attrs), spec.cloud_name)
    if spec.cloud_env_file:
        env_attrs = Keys.fold(
            {"cloudname": spec.cloud_name, "cloudenvfilename": spec.cloud_env_file}, "record"
        )
        checked = common.cloud_env_file(env_attrs, spec.cloud_name)
        _same("cloudenvfilename", checked, spec.cloud_env_file)
    common.nmi_port(attrs)
    common.pod_info(attrs)
    if spec.identity.client_id:
        check_client_id(spec.identity.client_id, "the record's client id")
    if not spec.objects:
        raise InvalidArgument("the record lists no objects")
    drafts = [_object(obj, f"object {i + 1}") for i, obj in enumerate(spec.objects)]
    check_paths(drafts, "objectAlias")


def _object(obj: ObjectSpec, label: str) -> Draft:
    if obj.select is None:
        check_object_name(obj.name, label)
    else:
        _selector(obj.select, obj, label)
    if obj.vault:
        common.check_vault(obj.vault, f"{label} vault")
    for part in obj.cert_parts:
        if not 0 <= part.mode <= 0o777:
            raise InvalidArgument(f"{label}: file mode {part.mode:o} is not between 0000 and 0777")
    _same(f"{label} version", version(obj.version, label), obj.version)
    if obj.alias:
        _same(f"{label} alias", normalise_path(obj.alias, f"{label} alias"), obj.alias)
    if not 0 <= obj.mode <= 0o777:
        raise InvalidArgument(f"{label}: file mode {obj.mode:o} is not between 0000 and 0777")
    if not 0 <= obj.version_history <= MAX_VERSION_HISTORY:
        raise InvalidArgument(f"{label}: version history {obj.version_history} is out of range")
    return Draft(obj, label)


def _selector(select: Selector, obj: ObjectSpec, label: str) -> None:
    if obj.name or obj.version or obj.version_history:
        raise InvalidArgument(f"{label}: a selecting entry has no name, version or history")
    if not (select.pattern or select.tags):
        raise InvalidArgument(f"{label}: the selection has neither pattern nor tags")
    if select.pattern and not GLOB.fullmatch(select.pattern):
        raise InvalidArgument(f"{label}: the selection's pattern is not a name glob")
    if any("=" not in t for t in select.tags):
        raise InvalidArgument(f"{label}: the selection's tags are not key=value")
    if not 1 <= select.max_matches <= MAX_MATCHES:
        raise InvalidArgument(f"{label}: the selection's bound is out of range")


def _same(what: str, checked: object, stored: object) -> None:
    if checked != stored:
        raise InvalidArgument(f"the record's {what} is not in its normal form")


def _types(spec: VolumeSpec) -> None:
    """JSON gives any type anywhere; the dataclasses do not check it themselves."""
    expected: list[tuple[object, type | tuple[type, ...], str]] = [
        (spec.vault_name, str, "vault_name"),
        (spec.tenant_id, str, "tenant_id"),
        (spec.cloud_name, str, "cloud_name"),
        (spec.cloud_env_file, str, "cloud_env_file"),
        (spec.identity, IdentitySpec, "identity"),
        (spec.pod, PodInfo, "pod"),
        (spec.objects, tuple, "objects"),
    ]
    if isinstance(spec.identity, IdentitySpec):
        expected += [
            (spec.identity.mode, IdentityMode, "identity.mode"),
            (spec.identity.client_id, str, "identity.client_id"),
            (spec.identity.nmi_port, int, "identity.nmi_port"),
        ]
    if isinstance(spec.pod, PodInfo):
        expected += [(getattr(spec.pod, f), str, f"pod.{f}") for f in PodInfo.__dataclass_fields__]
    for obj in spec.objects if isinstance(spec.objects, tuple) else ():
        expected += [
            (obj, ObjectSpec, "objects[]"),
            (obj.type, ObjectType, "objects[].type"),
            (obj.format, ObjectFormat, "objects[].format"),
            (obj.encoding, ObjectEncoding, "objects[].encoding"),
            (obj.content, FileContent, "objects[].content"),
            (obj.mode, int, "objects[].mode"),
            (obj.version_history, int, "objects[].version_history"),
            (obj.optional, bool, "objects[].optional"),
            (obj.vault, str, "objects[].vault"),
            (obj.select, (Selector, type(None)), "objects[].select"),
            (obj.cert_parts, tuple, "objects[].cert_parts"),
        ]
        if isinstance(obj.select, Selector):
            expected += [
                (obj.select.pattern, str, "objects[].select.pattern"),
                (obj.select.tags, tuple, "objects[].select.tags"),
                (obj.select.max_matches, int, "objects[].select.max_matches"),
            ]
            expected += [(t, str, "objects[].select.tags[]") for t in obj.select.tags]
        if isinstance(obj.cert_parts, tuple):
            expected += [(p, CertPart, "objects[].cert_parts[]") for p in obj.cert_parts]
            expected += [
                (p.mode, int, "objects[].cert_parts[].mode")
                for p in obj.cert_parts
                if isinstance(p, CertPart)
            ]
        expected += [(getattr(obj, f), str, f"objects[].{f}") for f in ("name", "version", "alias")]
    if spec.fs_group is not None:
        expected.append((spec.fs_group, int, "fs_group"))
        if isinstance(spec.fs_group, int) and not 0 <= spec.fs_group <= 0xFFFFFFFE:
            raise InvalidArgument("the record's fs_group is not a group id")
    for value, kind, name in expected:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidArgument(f"the record's {name} has the wrong type")
