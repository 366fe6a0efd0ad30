"""Volume attributes (CSI) or options (FlexVolume) -> `ParsedVolume`.

One parser for both callers. It takes the flat string map kubelet hands over (the pod's
`volumeAttributes` or `flexVolume.options`, plus the keys kubelet adds itself) and the CSI
`secrets`, and returns a complete, validated `ParsedVolume` or raises `InvalidArgument`. It never
raises anything else and never returns a partial spec: every check runs before any side effect.

Two ways of listing objects are accepted: the `azure/kv` FlexVolume's parallel `;`-separated lists
(`keyvaultobjectnames`, `keyvaultobjecttypes`, ...; `lists.py`) and the Azure secrets-store
provider's YAML `objects` array (`objects_yaml.py`). Keys are matched case-insensitively (ASCII;
`keys.py`). Where upstream silently ignored a mistake (list counts that differ, unknown types,
bad file modes, duplicate paths) we reject it. The identity modes are read by their own modules
in `driver.auth.modes` (`identity.py` picks the one chosen).

Error messages name the key and the problem. They may quote ordinary values (truncated) but never
the value of a secret: credentials and tokens are only ever described, never shown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TypeVar

from azcommon.credentials.aad import WORKLOAD_IDENTITY_AUDIENCE
from azcommon.errors import InvalidArgument
from driver.auth.modes.registry import module_for
from driver.model import ObjectSpec, ParsedVolume, VolumeSpec
from driver.spec import common
from driver.spec.identity import identity as parse_identity
from driver.spec.items import Draft
from driver.spec.keys import LIST_KEYS, Keys, known, quote
from driver.spec.lists import list_objects
from driver.spec.objects_yaml import MAX_VERSION_HISTORY, yaml_objects
from driver.spec.paths import check_paths

__all__ = ["MAX_VERSION_HISTORY", "WORKLOAD_IDENTITY_AUDIENCE", "parse_volume"]

T = TypeVar("T")


def parse_volume(
    attributes: Mapping[str, str],
    secrets: Mapping[str, str] | None = None,
    source: str = "csi",
    fs_group: str = "",
) -> ParsedVolume:
    """Parse and validate one volume request. Raises `InvalidArgument` listing every problem.
    `source` is the front door ("csi" or "flexvolume"): it picks the default `fileformat`.
    `fs_group` is CSI's volume_mount_group (FlexVolume's comes in its options)."""
    attrs = Keys.fold(attributes, "volume attribute")
    secret_keys = Keys.fold(secrets or {}, "secret")
    warnings = [
        f"unknown volume attribute {quote(attrs.names[k], 64)} ignored"
        for k in sorted(attrs.values)
        if not known(k)
    ]
    problems: list[str] = []

    def attempt(check: Callable[[], T]) -> T | None:
        # Independent sections each report their own problem so the user sees them all at once.
        try:
            return check()
        except InvalidArgument as error:
            problems.append(str(error))
            return None

    vault = attempt(lambda: common.vault_name(attrs))
    tenant = attempt(lambda: common.tenant(attrs))
    cloud = attempt(lambda: common.cloud_name(attrs))
    env_file = attempt(lambda: common.cloud_env_file(attrs, cloud or ""))
    pod = attempt(lambda: common.pod_info(attrs))
    identity = attempt(lambda: parse_identity(attrs, secret_keys, pod, warnings))
    objects = attempt(lambda: _objects(attrs, vault or "", warnings))
    content = attempt(lambda: common.file_content(attrs, source))
    group = attempt(lambda: common.fs_group(attrs, fs_group))

    if problems:
        raise InvalidArgument("; ".join(problems))
    assert vault is not None and tenant is not None and cloud is not None
    assert env_file is not None
    assert pod is not None and identity is not None and objects is not None
    assert content is not None
    objects = tuple(dataclasses.replace(obj, content=content) for obj in objects)
    identity_spec, auth = identity
    spec = VolumeSpec(
        vault_name=vault,
        tenant_id=tenant,
        identity=identity_spec,
        objects=objects,
        pod=pod,
        cloud_name=cloud,
        cloud_env_file=env_file,
        fs_group=group if group is not None and group >= 0 else None,
    )
    # The mode's own account of what it needs, the same check the credential provider makes.
    module_for(identity_spec.mode).validate(spec, auth)
    return ParsedVolume(spec=spec, auth=auth, warnings=tuple(warnings))


def _objects(attrs: Keys, vault: str, warnings: list[str]) -> tuple[ObjectSpec, ...]:
    list_keys = [k for k in LIST_KEYS if attrs.given(k)]
    drafts: list[Draft]
    if attrs.given("objects"):
        if list_keys:
            raise InvalidArgument(
                f"{attrs.name('objects')} and {attrs.name(list_keys[0])} are both given; "
                "list the objects one way only"
            )
        drafts, alias_key = yaml_objects(attrs, vault, warnings), "objectAlias"
    elif list_keys:
        drafts, alias_key = list_objects(attrs, vault), attrs.name("keyvaultobjectaliases")
    else:
        raise InvalidArgument(
            "no objects: set keyvaultobjectnames (with keyvaultobjecttypes) or objects"
        )
    check_paths(drafts, alias_key)
    return tuple(d.spec for d in drafts)
