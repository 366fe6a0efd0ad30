"""Volume attributes (CSI) or options (FlexVolume) -> `ParsedVolume`.

One parser for both callers. It takes the flat string map kubelet hands over (the pod's
`volumeAttributes` or `flexVolume.options`, plus the keys kubelet adds itself) and the CSI
`secrets`, and returns a complete, validated `ParsedVolume` or raises `InvalidArgument`. It never
raises anything else and never returns a partial spec: every check runs before any side effect.

Two ways of listing objects are accepted: the `azure/kv` FlexVolume's parallel `;`-separated lists
(`keyvaultobjectnames`, `keyvaultobjecttypes`, ...) and the Azure secrets-store provider's YAML
`objects` array. Keys are matched case-insensitively (ASCII). Where upstream silently ignored a
mistake (list counts that differ, unknown types, bad file modes, duplicate paths) we reject it.

Error messages name the key and the problem. They may quote ordinary values (truncated) but never
the value of a secret: credentials and tokens are only ever described, never shown.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import yaml

from driver.errors import InvalidArgument
from driver.model import (
    DEFAULT_FILE_MODE,
    DEFAULT_NMI_PORT,
    WORKLOAD_IDENTITY_AUDIENCE,
    AuthMaterial,
    IdentityMode,
    IdentitySpec,
    ObjectSpec,
    ObjectType,
    ParsedVolume,
    PodInfo,
    VolumeSpec,
)

__all__ = ["MAX_VERSION_HISTORY", "WORKLOAD_IDENTITY_AUDIENCE", "parse_volume"]

MAX_VERSION_HISTORY = 100

# Keys are compared in ASCII lower case; these are the canonical (lower-case) spellings.
_FLEX = "kubernetes.io/"
_CSI = "csi.storage.k8s.io/"
_FLEX_SECRET = "kubernetes.io/secret/"
_TOKENS = "csi.storage.k8s.io/serviceaccount.tokens"

_NAMES = ("keyvaultobjectnames", "keyvaultobjectname")
_TYPES = ("keyvaultobjecttypes", "keyvaultobjecttype")
_VERSIONS = ("keyvaultobjectversions", "keyvaultobjectversion")
_ALIASES = ("keyvaultobjectaliases",)
_LIST_KEYS = (*_NAMES, *_TYPES, *_VERSIONS, *_ALIASES)

_OUR_KEYS = frozenset(
    {
        "keyvaultname",
        *_LIST_KEYS,
        "tenantid",
        "usepodidentity",
        "nmiport",
        "usevmmanagedidentity",
        "vmmanagedidentityclientid",
        "userassignedidentityid",
        "clientid",
        "cloudname",
        "objects",
        "useazuretokenproxy",
        # Accepted for compatibility and unused: the vault URL comes from its name and the cloud.
        "resourcegroup",
        "subscriptionid",
        # Set by the secrets-store CSI driver / its users; they mean nothing to us.
        "secretproviderclass",
        "providername",
    }
)
# Keys kubelet adds on its own. Pod keys are read; the rest carry no meaning for a tmpfs of files.
_KUBELET_KEYS = frozenset(
    {
        f"{prefix}{suffix}"
        for prefix in (_FLEX, _CSI)
        for suffix in ("pod.name", "pod.namespace", "pod.uid", "serviceaccount.name")
    }
    | {
        _TOKENS,
        _CSI + "ephemeral",
        _FLEX + "readwrite",
        _FLEX + "fstype",
        _FLEX + "fsgroup",
        _FLEX + "mounterargs.fsgroup",
        _FLEX + "pvorvolumename",
        _FLEX + "mountsdir",
    }
)

_VAULT_CHARS = re.compile(r"[A-Za-z0-9-]+")
_OBJECT_NAME = re.compile(r"[A-Za-z0-9-]{1,127}")  # Key Vault's own rule for object names
_VERSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TENANT = re.compile(r"[A-Za-z0-9.-]{1,253}")  # a GUID, a domain name, or "adfs"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CLOUD = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_K8S_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
_UID = re.compile(r"[A-Za-z0-9-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,6}")
_OCTAL = re.compile(r"[0-7]{1,6}")

_TYPE_NAMES = ", ".join(t.value for t in ObjectType)
_FORMATS = ("pem", "pfx")
_ENCODINGS = ("utf-8", "base64", "hex")

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

T = TypeVar("T")


def parse_volume(
    attributes: Mapping[str, str], secrets: Mapping[str, str] | None = None
) -> ParsedVolume:
    """Parse and validate one volume request. Raises `InvalidArgument` listing every problem."""
    attrs = _Keys.fold(attributes, "volume attribute")
    secret_keys = _Keys.fold(secrets or {}, "secret")
    warnings = [
        f"unknown volume attribute {_quote(attrs.names[k], 64)} ignored"
        for k in sorted(attrs.values)
        if k not in _OUR_KEYS and k not in _KUBELET_KEYS and not k.startswith(_FLEX_SECRET)
    ]
    problems: list[str] = []

    def attempt(check: Callable[[], T]) -> T | None:
        # Independent sections each report their own problem so the user sees them all at once.
        try:
            return check()
        except InvalidArgument as error:
            problems.append(str(error))
            return None

    vault = attempt(lambda: _vault_name(attrs))
    tenant = attempt(lambda: _tenant(attrs))
    cloud = attempt(lambda: _cloud_name(attrs))
    pod = attempt(lambda: _pod_info(attrs))
    identity = attempt(lambda: _identity(attrs, secret_keys, pod, warnings))
    objects = attempt(lambda: _objects(attrs, vault or ""))

    if problems:
        raise InvalidArgument("; ".join(problems))
    assert vault is not None and tenant is not None and cloud is not None
    assert pod is not None and identity is not None and objects is not None
    identity_spec, auth = identity
    spec = VolumeSpec(
        vault_name=vault,
        tenant_id=tenant,
        identity=identity_spec,
        objects=objects,
        pod=pod,
        cloud_name=cloud,
    )
    return ParsedVolume(spec=spec, auth=auth, warnings=tuple(warnings))


# --- keys ---------------------------------------------------------------------------------------


@dataclass
class _Keys:
    """A string map with ASCII-case-folded keys, remembering how each key was spelled."""

    values: dict[str, str] = dataclasses.field(repr=False)  # may hold secrets and tokens
    names: dict[str, str]

    @classmethod
    def fold(cls, raw: Mapping[str, str], what: str) -> _Keys:
        values: dict[str, str] = {}
        names: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidArgument(f"{what} keys and values must be strings")
            # ASCII folding only: str.lower() would also map e.g. the Kelvin sign onto "k".
            folded = key.lower() if key.isascii() else key
            if folded in values and values[folded] != value:
                raise InvalidArgument(
                    f"{what} {_quote(folded, 64)} is given more than once (as "
                    f"{_quote(names[folded], 64)} and {_quote(key, 64)}) with different values"
                )
            values[folded] = value
            names[folded] = key
        return cls(values, names)

    def get(self, key: str) -> str:
        return self.values.get(key, "").strip()

    def given(self, key: str) -> bool:
        return bool(self.get(key))

    def name(self, key: str) -> str:
        """The key as the user spelled it (for messages)."""
        return self.names.get(key, key)


def _quote(value: str, limit: int = 40) -> str:
    """A non-secret value for a message: quoted, truncated, control characters escaped."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return json.dumps(text, ensure_ascii=False)


def _bool(attrs: _Keys, key: str) -> bool:
    value = attrs.get(key).lower()
    if value in ("", "false"):
        return False
    if value == "true":
        return True
    raise InvalidArgument(
        f'{attrs.name(key)} must be "true" or "false", got {_quote(attrs.get(key))}'
    )


def _pick(attrs: _Keys, keys: tuple[str, ...]) -> str | None:
    """Which of a plural key and its legacy singular is given (an error when both are)."""
    given = [k for k in keys if attrs.given(k)]
    if len(given) > 1:
        raise InvalidArgument(
            f"{attrs.name(given[0])} and {attrs.name(given[1])} are both given; use only "
            f"{attrs.name(keys[0])}"
        )
    return given[0] if given else None


# --- scalar settings ------------------------------------------------------------------------------


def _vault_name(attrs: _Keys) -> str:
    name = attrs.get("keyvaultname")
    key = attrs.name("keyvaultname")
    if not name:
        raise InvalidArgument(f"{key} is required: the name of the Key Vault to read from")
    problem = ""
    if not 3 <= len(name) <= 24:
        problem = "must be 3 to 24 characters long"
    elif not _VAULT_CHARS.fullmatch(name):
        problem = "may contain only letters, digits and hyphens"
    elif not name[0].isalpha():
        problem = "must start with a letter"
    elif not name[-1].isalnum():
        problem = "must end with a letter or digit"
    elif "--" in name:
        problem = 'must not contain "--"'
    if problem:
        raise InvalidArgument(f"{key} {_quote(name)} is not a valid vault name: it {problem}")
    return name


def _tenant(attrs: _Keys) -> str:
    tenant = attrs.get("tenantid")
    key = attrs.name("tenantid")
    if not tenant:
        raise InvalidArgument(f"{key} is required: the Entra ID tenant (directory) id of the vault")
    if not _TENANT.fullmatch(tenant):
        raise InvalidArgument(
            f"{key} {_quote(tenant)} is not a valid tenant id (a GUID or domain name)"
        )
    return tenant


def _cloud_name(attrs: _Keys) -> str:
    cloud = attrs.get("cloudname")
    if cloud and not _CLOUD.fullmatch(cloud):
        raise InvalidArgument(
            f"{attrs.name('cloudname')} {_quote(cloud)} is not a valid cloud name "
            "(e.g. AzurePublicCloud)"
        )
    return cloud


def _nmi_port(attrs: _Keys) -> int:
    text = attrs.get("nmiport")
    if not text:
        return DEFAULT_NMI_PORT
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise InvalidArgument(
            f"{attrs.name('nmiport')} must be an integer between 1 and 65535, got {_quote(text)}"
        )
    return int(text)


def _pod_info(attrs: _Keys) -> PodInfo:
    fields: dict[str, str] = {}
    for field, suffix in (
        ("name", "pod.name"),
        ("namespace", "pod.namespace"),
        ("uid", "pod.uid"),
        ("service_account", "serviceaccount.name"),
    ):
        flex, csi = attrs.get(_FLEX + suffix), attrs.get(_CSI + suffix)
        if flex and csi and flex != csi:
            raise InvalidArgument(
                f"{attrs.name(_FLEX + suffix)} and {attrs.name(_CSI + suffix)} disagree"
            )
        value = csi or flex
        pattern = _UID if field == "uid" else _K8S_NAME
        if value and not pattern.fullmatch(value):
            key = attrs.name(_CSI + suffix if csi else _FLEX + suffix)
            what = "uid" if field == "uid" else "Kubernetes name"
            raise InvalidArgument(f"{key} {_quote(value)} is not a valid {what}")
        fields[field] = value
    return PodInfo(**fields)


# --- identity -------------------------------------------------------------------------------------


def _identity(
    attrs: _Keys, secrets: _Keys, pod: PodInfo | None, warnings: list[str]
) -> tuple[IdentitySpec, AuthMaterial]:
    if _bool(attrs, "useazuretokenproxy"):
        raise InvalidArgument(
            f"{attrs.name('useazuretokenproxy')} (AKS identity binding) is not supported; "
            "use workload identity (clientID) instead"
        )
    use_pod = _bool(attrs, "usepodidentity")
    use_vm = _bool(attrs, "usevmmanagedidentity")
    wi_client = attrs.get("clientid")
    sp_id, sp_secret = _sp_credentials(attrs, secrets)
    tokens = _sa_tokens(attrs, secrets)
    nmi_port = _nmi_port(attrs)

    chosen = [
        label
        for label, on in (
            (f'{attrs.name("usepodidentity")}: "true"', use_pod),
            (f'{attrs.name("usevmmanagedidentity")}: "true"', use_vm),
            (f"{attrs.name('clientid')} (workload identity)", bool(wi_client)),
            (
                "clientid/clientsecret in the volume's secret (service principal)",
                bool(sp_id or sp_secret),
            ),
        )
        if on
    ]
    if len(chosen) > 1:
        raise InvalidArgument(
            f"more than one identity mode is chosen ({' and '.join(chosen)}); choose exactly one"
        )
    if not chosen:
        raise InvalidArgument(
            'no identity mode is chosen: set one of usepodidentity: "true" (AAD pod identity), '
            'usevmmanagedidentity: "true" (VM managed identity, optionally with '
            "vmmanagedidentityclientid), clientID (workload identity), or put clientid and "
            "clientsecret in the volume's secret (secretRef / nodePublishSecretRef) for a "
            "service principal"
        )

    vm_client = _vm_client_id(attrs)
    if vm_client and not use_vm:
        key = (
            "vmmanagedidentityclientid"
            if attrs.given("vmmanagedidentityclientid")
            else "userassignedidentityid"
        )
        warnings.append(
            f'{attrs.name(key)} ignored: {attrs.name("usevmmanagedidentity")} is not "true"'
        )

    if use_pod:
        missing = [
            w
            for w, v in (("name", pod and pod.name), ("namespace", pod and pod.namespace))
            if not v
        ]
        if pod is not None and missing:
            raise InvalidArgument(
                f"{attrs.name('usepodidentity')} needs the pod's {' and '.join(missing)}, which "
                "kubelet did not pass (kubernetes.io/pod.* for FlexVolume; for CSI set "
                "podInfoOnMount: true on the CSIDriver)"
            )
        return IdentitySpec(IdentityMode.POD_IDENTITY, "", nmi_port), AuthMaterial()
    if use_vm:
        return IdentitySpec(IdentityMode.VM_MANAGED_IDENTITY, vm_client, nmi_port), AuthMaterial()
    if wi_client:
        _check_client_id(wi_client, attrs.name("clientid"), quote=True)
        token = tokens.get(WORKLOAD_IDENTITY_AUDIENCE)
        if token is None:
            raise InvalidArgument(
                f"{attrs.name('clientid')} (workload identity) needs a service-account token for "
                f"audience {WORKLOAD_IDENTITY_AUDIENCE} in csi.storage.k8s.io/serviceAccount.tokens, "
                f"and kubelet passed none: the CSIDriver must list that audience in tokenRequests"
            )
        return (
            IdentitySpec(IdentityMode.WORKLOAD_IDENTITY, wi_client, nmi_port),
            AuthMaterial(sa_token=token[0], sa_token_expiry=token[1]),
        )
    if not sp_id:
        raise InvalidArgument(
            "service principal: the volume's secret has clientsecret but no clientid"
        )
    if not sp_secret:
        raise InvalidArgument(
            "service principal: the volume's secret has clientid but no clientsecret"
        )
    _check_client_id(sp_id, "clientid in the volume's secret", quote=False)
    return (
        IdentitySpec(IdentityMode.SERVICE_PRINCIPAL, sp_id, nmi_port),
        AuthMaterial(client_secret=sp_secret),
    )


def _check_client_id(value: str, where: str, *, quote: bool) -> None:
    if not _CLIENT_ID.fullmatch(value):
        shown = f" {_quote(value)}" if quote else ""
        raise InvalidArgument(f"{where}{shown} is not a valid client id (expected a GUID)")


def _vm_client_id(attrs: _Keys) -> str:
    legacy, provider = attrs.get("vmmanagedidentityclientid"), attrs.get("userassignedidentityid")
    if legacy and provider and legacy != provider:
        raise InvalidArgument(
            f"{attrs.name('vmmanagedidentityclientid')} and "
            f"{attrs.name('userassignedidentityid')} name different identities; give one"
        )
    client = legacy or provider
    if client:
        key = "vmmanagedidentityclientid" if legacy else "userassignedidentityid"
        _check_client_id(client, attrs.name(key), quote=True)
    return client


def _sp_credentials(attrs: _Keys, secrets: _Keys) -> tuple[str, str]:
    """(clientid, clientsecret) from the CSI secrets and/or the FlexVolume secretRef keys."""
    flex: dict[str, str] = {}
    for key in attrs.values:
        if key.startswith(_FLEX_SECRET):
            sub = key[len(_FLEX_SECRET) :]
            decoded = _b64(
                attrs.values[key], attrs.name(key), text=sub in ("clientid", "clientsecret")
            )
            if decoded is not None:
                flex[sub] = decoded
    found: list[str] = []
    for sub in ("clientid", "clientsecret"):
        csi_value, flex_value = secrets.get(sub), flex.get(sub, "").strip()
        if csi_value and flex_value and csi_value != flex_value:
            raise InvalidArgument(
                f"{sub} is given both in the CSI secrets and in {_FLEX_SECRET}{sub}, "
                "with different values"
            )
        found.append(csi_value or flex_value)
    return found[0], found[1]


def _b64(value: str, key: str, *, text: bool) -> str | None:
    # kubelet base64-encodes secretRef values; like upstream, tolerate wrapped lines.
    compact = "".join(value.split())
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{key} is not valid base64") from None
    if not text:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{key} does not decode to UTF-8 text") from None


def _sa_tokens(attrs: _Keys, secrets: _Keys) -> dict[str, tuple[str, float]]:
    """Service-account tokens by audience; newer kubelets pass them in secrets, older in attributes."""
    merged: dict[str, tuple[str, float]] = {}
    for source, what in ((attrs, "volume attribute"), (secrets, "secret")):
        text = source.get(_TOKENS)
        if text:
            for audience, token in _parse_tokens(text, f"{what} {source.name(_TOKENS)}").items():
                merged.setdefault(audience, token)
    return merged


def _parse_tokens(text: str, where: str) -> dict[str, tuple[str, float]]:
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as error:
        # JSONDecodeError's message gives only a position, never the document.
        detail = error.msg if isinstance(error, json.JSONDecodeError) else "too deeply nested"
        raise InvalidArgument(f"{where} is not valid JSON ({detail})") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f'{where} must be a JSON object {{"<audience>": {{"token": ...}}}}')
    tokens: dict[str, tuple[str, float]] = {}
    for audience, entry in data.items():
        shown = _quote(audience, 80)
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            raise InvalidArgument(f"{where}: the entry for audience {shown} has no token string")
        expiry = entry.get("expirationTimestamp", "")
        if not isinstance(expiry, str):
            raise InvalidArgument(
                f"{where}: expirationTimestamp for audience {shown} must be a string"
            )
        if entry["token"]:
            tokens[audience] = (entry["token"], _epoch(expiry))
    return tokens


def _epoch(timestamp: str) -> float:
    """RFC 3339 -> epoch seconds; 0 when absent or unreadable (the expiry is only a hint)."""
    try:
        moment = datetime.fromisoformat(timestamp.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        return 0.0


# --- objects --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Draft:
    """One object before its path is checked against the others."""

    spec: ObjectSpec
    label: str  # e.g. 'object 2 ("db-password")'


def _objects(attrs: _Keys, vault: str) -> tuple[ObjectSpec, ...]:
    list_keys = [k for k in _LIST_KEYS if attrs.given(k)]
    if attrs.given("objects"):
        if list_keys:
            raise InvalidArgument(
                f"{attrs.name('objects')} and {attrs.name(list_keys[0])} are both given; "
                "list the objects one way only"
            )
        drafts, alias_key = _yaml_objects(attrs, vault), "objectAlias"
    elif list_keys:
        drafts, alias_key = _list_objects(attrs, vault), attrs.name("keyvaultobjectaliases")
    else:
        raise InvalidArgument(
            "no objects: set keyvaultobjectnames (with keyvaultobjecttypes) or objects"
        )
    _check_paths(drafts, alias_key)
    return tuple(d.spec for d in drafts)


def _split(attrs: _Keys, key: str) -> list[str]:
    return [part.strip() for part in attrs.get(key).split(";")]


def _list_objects(attrs: _Keys, vault: str) -> list[_Draft]:
    names_key = _pick(attrs, _NAMES)
    types_key = _pick(attrs, _TYPES)
    versions_key = _pick(attrs, _VERSIONS)
    aliases_key = _pick(attrs, _ALIASES)
    if names_key is None:
        other = next(k for k in (types_key, versions_key, aliases_key) if k is not None)
        raise InvalidArgument(
            f"{attrs.name(other)} is given without keyvaultobjectnames (the object names)"
        )
    names = _split(attrs, names_key)
    if types_key is None:
        raise InvalidArgument(
            f"keyvaultobjecttypes is required: one of {_TYPE_NAMES} for each object in "
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
    drafts = []
    for i, name in enumerate(names):
        where = f"{attrs.name(names_key)} entry {i + 1}"
        _check_object_name(name, where)
        label = f"object {i + 1} ({_quote(name)})"
        object_type = _object_type(types[i], f"{attrs.name(types_key)} entry {i + 1}")
        version = ""
        if versions is not None:
            version = _version(versions[i], f"{attrs.name(versions_key or '')} entry {i + 1}")
        alias = ""
        if aliases is not None:
            alias_where = f"{attrs.name(aliases_key or '')} entry {i + 1}"
            if not aliases[i]:
                raise InvalidArgument(
                    f"{alias_where} is empty; give every object an alias, or leave out "
                    f"{attrs.name(aliases_key or '')} to use the object names"
                )
            alias = _normalise_path(aliases[i], alias_where)
        spec = ObjectSpec(name=name, type=object_type, version=version, alias=alias, vault=vault)
        drafts.append(_Draft(spec, label))
    return drafts


def _check_object_name(name: str, where: str) -> None:
    if not name:
        raise InvalidArgument(f"{where}: the object name is empty")
    if not _OBJECT_NAME.fullmatch(name):
        raise InvalidArgument(
            f"{where}: {_quote(name)} is not a valid Key Vault object name "
            "(1 to 127 letters, digits and hyphens)"
        )


def _object_type(text: str, where: str) -> ObjectType:
    value = text.strip().lower()
    if not value:
        raise InvalidArgument(f"{where}: the object type is empty (use one of {_TYPE_NAMES})")
    try:
        return ObjectType(value)
    except ValueError:
        hint = ' (did you mean "cert"?)' if value in ("certificate", "certificates") else ""
        raise InvalidArgument(
            f"{where}: unknown object type {_quote(text)}; use one of {_TYPE_NAMES}{hint}"
        ) from None


def _version(text: str, where: str) -> str:
    value = text.strip()
    if value.lower() in ("", "latest"):
        return ""
    if not _VERSION.fullmatch(value):
        raise InvalidArgument(f"{where}: {_quote(value)} is not a valid object version")
    return value


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


def _yaml_objects(attrs: _Keys, vault: str) -> list[_Draft]:
    key = attrs.name("objects")
    root = _load_yaml(attrs.get("objects"), key)
    if not isinstance(root, dict):
        raise InvalidArgument(f"{key} must be a YAML mapping with an `array:` list of objects")
    items: object = None
    for field, value in root.items():
        if not isinstance(field, str) or field.lower() != "array":
            shown = _quote(field) if isinstance(field, str) else "(not a string)"
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
        drafts.append(_yaml_item(item, where, vault))
    return drafts


def _yaml_item(item: dict[Any, Any], where: str, vault: str) -> _Draft:
    fields: dict[str, str] = {}
    for raw_field, raw_value in item.items():
        if not isinstance(raw_field, str):
            raise InvalidArgument(f"{where}: field names must be strings")
        canonical = _ITEM_FIELDS.get(raw_field.lower()) if raw_field.isascii() else None
        if canonical is None:
            known = ", ".join(_ITEM_FIELDS.values())
            raise InvalidArgument(
                f"{where}: unknown field {_quote(raw_field)} (known fields: {known})"
            )
        if canonical in fields:
            raise InvalidArgument(f"{where}: field {canonical} is given twice")
        if not isinstance(raw_value, str):
            raise InvalidArgument(f"{where}: {canonical} must be a string")
        fields[canonical] = raw_value.strip()

    name = fields.get("objectName", "")
    _check_object_name(name, f"{where} objectName")
    label = f"{where} ({_quote(name)})"
    object_type = _object_type(fields.get("objectType", ""), f"{label} objectType")
    version = _version(fields.get("objectVersion", ""), f"{label} objectVersion")
    alias = fields.get("objectAlias", "")
    if alias:
        alias = _normalise_path(alias, f"{label} objectAlias")

    fmt = fields.get("objectFormat", "").lower()
    if fmt and fmt not in _FORMATS:
        raise InvalidArgument(
            f"{label} objectFormat: unknown format {_quote(fields['objectFormat'])}; "
            f"use {' or '.join(_FORMATS)}"
        )
    encoding = fields.get("objectEncoding", "").lower() or "utf-8"
    if encoding not in _ENCODINGS:
        raise InvalidArgument(
            f"{label} objectEncoding: unknown encoding {_quote(fields['objectEncoding'])}; "
            f"use one of {', '.join(_ENCODINGS)}"
        )
    if object_type is not ObjectType.SECRET:
        if fmt:
            raise InvalidArgument(
                f"{label} objectFormat applies only to objectType secret, not {object_type}"
            )
        if encoding != "utf-8":
            raise InvalidArgument(
                f"{label} objectEncoding applies only to objectType secret, not {object_type}"
            )

    mode = DEFAULT_FILE_MODE
    permission = fields.get("filePermission", "")
    if permission:
        digits = permission[2:] if permission.lower().startswith("0o") else permission
        if not _OCTAL.fullmatch(digits) or int(digits, 8) > 0o777:
            raise InvalidArgument(
                f"{label} filePermission {_quote(permission)} is not an octal file mode "
                'between 0000 and 0777 (e.g. "0644")'
            )
        mode = int(digits, 8)

    history = 0
    history_text = fields.get("objectVersionHistory", "")
    if history_text:
        if not _DIGITS.fullmatch(history_text) or not 1 <= int(history_text) <= MAX_VERSION_HISTORY:
            raise InvalidArgument(
                f"{label} objectVersionHistory {_quote(history_text)} is not an integer "
                f"between 1 and {MAX_VERSION_HISTORY}"
            )
        history = int(history_text)

    spec = ObjectSpec(
        name=name,
        type=object_type,
        version=version,
        alias=alias,
        format=fmt,
        encoding=encoding,
        mode=mode,
        version_history=history,
        vault=vault,
    )
    return _Draft(spec, label)


# --- paths ----------------------------------------------------------------------------------------


def _normalise_path(raw: str, where: str) -> str:
    """A safe relative file path inside the volume, normalised; raises naming `where`."""
    text = raw.strip()
    problem = ""
    if not text:
        problem = "is empty"
    elif any(ord(c) < 32 or ord(c) == 127 for c in text):
        problem = "contains a control character"
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
    raise InvalidArgument(f"{where} {_quote(raw)} {problem}")


def _files(spec: ObjectSpec) -> Iterable[str]:
    if spec.version_history:
        return (f"{spec.path}/{i}" for i in range(spec.version_history))
    return (spec.path,)


def _check_paths(drafts: list[_Draft], alias_key: str) -> None:
    owner: dict[str, _Draft] = {}
    for draft in drafts:
        for path in _files(draft.spec):
            if path in owner:
                raise InvalidArgument(
                    f"{owner[path].label} and {draft.label} both write the file {_quote(path)}; "
                    f"give them different {alias_key} values"
                )
            owner[path] = draft
    for path, draft in owner.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in owner:
                raise InvalidArgument(
                    f"{owner[parent].label} writes the file {_quote(parent)} but {draft.label} "
                    f"needs it as a directory for {_quote(path)}; change one {alias_key}"
                )
