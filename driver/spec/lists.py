"""The `azure/kv` FlexVolume's parallel `;`-separated lists: `keyvaultobjectnames`,
`keyvaultobjecttypes`, `keyvaultobjectversions`, `keyvaultobjectaliases` (and the legacy
singular keys), and ours: `keyvaultobjectvaults` (each object's vault; empty: `keyvaultname`) and
`keyvaultobjectoptional` (`true`: a missing or disabled object is skipped). Every list must have
exactly one entry per name. A name with glob characters (`app-*`, or `*` for any) selects every
object of its type that matches it, and carries the tags of its `keyvaultobjecttags` entry
(`env=prod,team=web`) if any; its alias, if any, is the directory they land in."""

from __future__ import annotations

from azcommon.errors import InvalidArgument
from driver.keyvault.types.selection import GLOB, is_glob
from driver.model import ObjectSpec, Selector
from driver.spec.common import check_vault
from driver.spec.items import (
    TYPE_NAMES,
    Draft,
    check_object_name,
    object_type,
    parse_tags,
    version,
)
from driver.spec.keys import (
    ALIASES,
    NAMES,
    OPTIONALS,
    TAGS,
    TYPES,
    VAULTS,
    VERSIONS,
    Keys,
    quote,
)
from driver.spec.paths import normalise_path


def _split(attrs: Keys, key: str) -> list[str]:
    return [part.strip() for part in attrs.get(key).split(";")]


def list_objects(attrs: Keys, vault: str) -> list[Draft]:
    names_key = attrs.pick(NAMES)
    types_key = attrs.pick(TYPES)
    versions_key = attrs.pick(VERSIONS)
    aliases_key = attrs.pick(ALIASES)
    vaults_key = attrs.pick(VAULTS)
    optional_key = attrs.pick(OPTIONALS)
    tags_key = attrs.pick(TAGS)
    if names_key is None:
        other = next(
            k
            for k in (types_key, versions_key, aliases_key, vaults_key, optional_key, tags_key)
            if k is not None
        )
        raise InvalidArgument(
            f"{attrs.name(other)} is given without keyvaultobjectnames (the object names)"
        )
    names = _split(attrs, names_key)
    if types_key is None:
        raise InvalidArgument(
            f"keyvaultobjecttypes is required: one of {TYPE_NAMES} for each object in "
            f"{attrs.name(names_key)}, separated by ';'"
        )

    def matching(key: str | None) -> list[str] | None:
        # A list must have exactly one entry per name (upstream silently dropped it otherwise).
        if key is None:
            return None
        entries = _split(attrs, key)
        if len(entries) != len(names):
            raise InvalidArgument(
                f"{attrs.name(key)} has {len(entries)} entries but {attrs.name(names_key)} has "
                f"{len(names)}; give exactly one per object, separated by ';'"
            )
        return entries

    types = matching(types_key) or []
    versions = matching(versions_key)
    aliases = matching(aliases_key)
    vaults = matching(vaults_key)
    optionals = matching(optional_key)
    tag_lists = matching(tags_key)
    drafts = []
    for i, name in enumerate(names):
        where = f"{attrs.name(names_key)} entry {i + 1}"
        selector = None
        if is_glob(name):
            if not GLOB.fullmatch(name):
                raise InvalidArgument(
                    f"{where}: {quote(name)} is not a name glob (letters, digits, hyphens and "
                    "* ? [ ])"
                )
            selector = Selector(pattern=name)
        else:
            check_object_name(name, where)
        if tag_lists is not None and tag_lists[i]:
            tags_where = f"{attrs.name(tags_key or '')} entry {i + 1}"
            if selector is None:
                raise InvalidArgument(
                    f"{tags_where}: tags select objects, so the name must be a glob "
                    f"(e.g. * for any name), not {quote(name)}"
                )
            selector = Selector(pattern=name, tags=parse_tags(tag_lists[i], tags_where))
        label = f"object {i + 1} ({quote(name)})"
        kind = object_type(types[i], f"{attrs.name(types_key)} entry {i + 1}")
        pinned = ""
        if versions is not None:
            pinned = version(versions[i], f"{attrs.name(versions_key or '')} entry {i + 1}")
        alias = ""
        if aliases is not None:
            alias_where = f"{attrs.name(aliases_key or '')} entry {i + 1}"
            if not aliases[i]:
                raise InvalidArgument(
                    f"{alias_where} is empty; give every object an alias, or leave out "
                    f"{attrs.name(aliases_key or '')} to use the object names"
                )
            alias = normalise_path(aliases[i], alias_where)
        own_vault = ""
        if vaults is not None and vaults[i]:
            own_vault = vaults[i]
            check_vault(own_vault, f"{attrs.name(vaults_key or '')} entry {i + 1}")
        optional = False
        if optionals is not None:
            flag = optionals[i].lower()
            if flag not in ("", "true", "false"):
                raise InvalidArgument(
                    f"{attrs.name(optional_key or '')} entry {i + 1} must be true, false or "
                    f"empty, got {quote(optionals[i])}"
                )
            optional = flag == "true"
        if selector is not None and pinned:
            raise InvalidArgument(
                f"{label}: a name pattern always reads the latest versions; leave its "
                f"{attrs.name(versions_key or '')} entry empty"
            )
        spec = ObjectSpec(
            name="" if selector else name,
            type=kind,
            version=pinned,
            alias=alias,
            vault=own_vault or vault,
            optional=optional,
            select=selector,
        )
        drafts.append(Draft(spec, label))
    return drafts
