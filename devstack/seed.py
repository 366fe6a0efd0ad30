"""Seed files: the YAML that declares the devstack's world.

Format (every section optional except identities/vaults for anything useful)::

    tenant_id: 11111111-1111-1111-1111-111111111111
    admin: admin                      # identity with full access to every vault
    token_lifetime_seconds: 3600
    ports: {authority: 0, imds: 0, nmi: 0, admin: 0, arm: 0, vaults: {testkv: 0}}   # 0 = any free port
    identities:
      <name>: {kind: service-principal|user-assigned|system-assigned|workload,
               client_id: <guid>, client_secret: <text>,        # secret: service principals
               resource_id: <ARM id>, principal_id: <guid>,     # managed identities; derived if absent
               federations: [{namespace: ns, service_account: sa, audience: api://AzureADTokenExchange}]}
    arm: {...}      # VMs, scale sets, nodes and who may assign what: see devstack/arm/seed.py
    vaults:
      <vault>:
        access_policies: {<identity>: {secrets: [get, list], keys: [...], certificates: [...]}}
        secrets:
          <name>: {value: text, content_type: text/plain, enabled: true}
          <name>: {versions: [{value: v1}, {value: v2, enabled: false}]}   # oldest first
        keys:
          <name>: {kty: RSA|EC, size: 2048, curve: P-256|P-384|P-521}
        certificates:
          <name>: {kty: RSA|EC, size: 2048, curve: P-256, subject: CN=x,
                   content_type: application/x-pem-file|application/x-pkcs12,
                   chain: true}              # leaf <- intermediate <- root, imported
          <name>: {pem_file: path} | {pfx_file: path, password: pw}   # imported from files
    pods:
      <namespace>/<pod>: {identity: <identity>, delay_seconds: 0}

The default world (`default_seed.yaml`, used without --seed):

- tenant 11111111-1111-1111-1111-111111111111; vaults `testkv` and `otherkv`.
- identities (client ids are fixed):
  - admin        a0000000-0000-0000-0000-000000000001  service principal, secret
                 `devstack-admin-secret`, full access everywhere
  - pod-identity a0000000-0000-0000-0000-000000000002  user-assigned; get/list on testkv
  - no-access    a0000000-0000-0000-0000-000000000003  user-assigned; no access anywhere
  - kvcreds      a0000000-0000-0000-0000-000000000004  service principal, secret
                 `kvcreds-client-secret`; get/list on testkv
  - vm-system    a0000000-0000-0000-0000-000000000005  the VM's system-assigned identity;
                 get/list on testkv
  - vm-user      a0000000-0000-0000-0000-000000000006  user-assigned; get/list on testkv
  - workload     a0000000-0000-0000-0000-000000000007  federated with default/workload-sa;
                 get/list on testkv
- pods: default/nginx-flex-kv-podid, default/nginx-csi-kv-podid -> pod-identity;
  default/no-access-pod -> no-access; default/slow-pod -> pod-identity after 3 s.
- testkv: secrets secret1, app-secret-1..3; keys key1 (RSA 2048), ec-key (EC P-256);
  certificates cert1 (self-signed RSA, PEM), ec-cert (self-signed EC P-256, PEM), pfx-cert
  (imported leaf <- intermediate <- root, PKCS#12). otherkv: secret secret1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from devstack import crypto
from devstack.arm.seed import build_compute
from devstack.world import (
    IDENTITY_KINDS,
    SA_AUDIENCE,
    BadInput,
    Federation,
    Identity,
    PodAssignment,
    Vault,
    World,
)


class SeedError(ValueError):
    """The seed file cannot be used; the message names the entry."""


@dataclass
class Ports:
    authority: int = 0
    imds: int = 0
    nmi: int = 0
    admin: int = 0
    vaults: dict[str, int] = field(default_factory=dict)
    arm: int = 0


def default_seed_text() -> str:
    return resources.files("devstack").joinpath("default_seed.yaml").read_text()


def load_seed(path: Path | None) -> tuple[World, Ports]:
    """Build the world a seed file (or the default world) describes."""
    if path is None:
        text, base = default_seed_text(), Path.cwd()
    else:
        try:
            text, base = path.read_text(), path.resolve().parent
        except OSError as exc:
            raise SeedError(f"seed {path}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SeedError(f"seed {path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SeedError(f"seed {path}: expected a mapping at the top level")
    try:
        return build_world(raw, base)
    except (SeedError, BadInput, crypto.CryptoInputError, OSError, ValueError) as exc:
        raise SeedError(f"seed {path or '(default)'}: {exc}") from None


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SeedError(f"{where}: expected a mapping")
    return value


def build_world(raw: dict[str, Any], base: Path) -> tuple[World, Ports]:
    identities = _mapping(raw.get("identities"), "identities")
    admin = str(raw.get("admin") or "admin")
    if admin not in identities:
        raise SeedError(f"admin identity {admin!r} is not declared under identities")
    world = World(
        tenant_id=str(raw.get("tenant_id") or "11111111-1111-1111-1111-111111111111"),
        admin=admin,
        token_lifetime=int(raw.get("token_lifetime_seconds") or 3600),
    )
    for name, spec in identities.items():
        world.add_identity(_identity(str(name), _mapping(spec, f"identities.{name}")))
    world.compute = build_compute(world, raw.get("arm"))

    vaults = _mapping(raw.get("vaults"), "vaults")
    for name in vaults:
        world.vaults[str(name).lower()] = Vault(str(name).lower())
    for name in world.vaults:
        world.set_policy(
            name, admin, {"secrets": ["all"], "keys": ["all"], "certificates": ["all"]}
        )
    for name, spec in vaults.items():
        _fill_vault(world, str(name).lower(), _mapping(spec, f"vaults.{name}"), base)

    for key, spec in _mapping(raw.get("pods"), "pods").items():
        entry = _mapping(spec, f"pods.{key}")
        namespace, _, pod = str(key).partition("/")
        if not namespace or not pod:
            raise SeedError(f"pods.{key}: the key must be <namespace>/<pod>")
        identity = str(entry.get("identity") or "")
        if identity not in world.identities:
            raise SeedError(f"pods.{key}: identity {identity!r} is not declared")
        world.pods[f"{namespace}/{pod}"] = PodAssignment(
            namespace, pod, identity, float(entry.get("delay_seconds") or 0)
        )

    ports_raw = _mapping(raw.get("ports"), "ports")
    ports = Ports(
        authority=int(ports_raw.get("authority") or 0),
        imds=int(ports_raw.get("imds") or 0),
        nmi=int(ports_raw.get("nmi") or 0),
        admin=int(ports_raw.get("admin") or 0),
        arm=int(ports_raw.get("arm") or 0),
        vaults={
            str(k).lower(): int(v)
            for k, v in _mapping(ports_raw.get("vaults"), "ports.vaults").items()
        },
    )
    return world, ports


def _identity(name: str, spec: dict[str, Any]) -> Identity:
    kind = str(spec.get("kind") or "")
    if kind not in IDENTITY_KINDS:
        raise SeedError(
            f"identities.{name}: kind {kind!r} is not one of {', '.join(IDENTITY_KINDS)}"
        )
    client_id = str(spec.get("client_id") or "")
    if not client_id:
        raise SeedError(f"identities.{name}: client_id is required")
    secret = spec.get("client_secret")
    if kind == "service-principal" and not secret:
        raise SeedError(f"identities.{name}: a service principal needs a client_secret")
    federations = []
    for i, fed in enumerate(spec.get("federations") or []):
        entry = _mapping(fed, f"identities.{name}.federations[{i}]")
        if not entry.get("namespace") or not entry.get("service_account"):
            raise SeedError(
                f"identities.{name}.federations[{i}]: namespace and service_account are required"
            )
        federations.append(
            Federation(
                name,
                str(entry["namespace"]),
                str(entry["service_account"]),
                str(entry.get("audience") or SA_AUDIENCE),
            )
        )
    return Identity(
        name,
        kind,
        client_id,
        str(secret) if secret else None,
        federations,
        resource_id=str(spec.get("resource_id") or ""),
        principal_id=str(spec.get("principal_id") or ""),
    )


def _fill_vault(world: World, vault: str, spec: dict[str, Any], base: Path) -> None:
    for identity, perms in _mapping(
        spec.get("access_policies"), f"vaults.{vault}.access_policies"
    ).items():
        entry = _mapping(perms, f"vaults.{vault}.access_policies.{identity}")
        if identity not in world.identities:
            raise SeedError(
                f"vaults.{vault}.access_policies: identity {identity!r} is not declared"
            )
        world.set_policy(vault, str(identity), {k: list(v or []) for k, v in entry.items()})

    for name, secret in _mapping(spec.get("secrets"), f"vaults.{vault}.secrets").items():
        entry = _mapping(secret, f"vaults.{vault}.secrets.{name}")
        versions = entry.get("versions") or [entry]
        for i, version in enumerate(versions):
            v = _mapping(version, f"vaults.{vault}.secrets.{name}.versions[{i}]")
            if "value" not in v:
                raise SeedError(f"vaults.{vault}.secrets.{name}: value is required")
            world.set_secret(
                vault,
                str(name),
                str(v["value"]),
                v.get("content_type"),
                enabled=bool(v.get("enabled", True)),
            )

    for name, key in _mapping(spec.get("keys"), f"vaults.{vault}.keys").items():
        entry = _mapping(key, f"vaults.{vault}.keys.{name}")
        world.add_key(
            vault,
            str(name),
            crypto.generate_key(
                str(entry.get("kty") or "RSA"),
                int(entry.get("size") or 2048),
                str(entry.get("curve") or "P-256"),
            ),
        )

    for name, cert in _mapping(spec.get("certificates"), f"vaults.{vault}.certificates").items():
        _seed_certificate(
            world, vault, str(name), _mapping(cert, f"vaults.{vault}.certificates.{name}"), base
        )


def _seed_certificate(
    world: World, vault: str, name: str, spec: dict[str, Any], base: Path
) -> None:
    content_type = str(spec.get("content_type") or crypto.PKCS12_CONTENT_TYPE)
    if spec.get("pem_file"):
        key, chain = crypto.parse_pem_bundle((base / str(spec["pem_file"])).read_text())
        world.add_certificate(vault, name, key, chain, content_type, issuer_name="Unknown")
        return
    if spec.get("pfx_file"):
        key, chain = crypto.parse_pfx(
            (base / str(spec["pfx_file"])).read_bytes(), spec.get("password")
        )
        world.add_certificate(vault, name, key, chain, content_type, issuer_name="Unknown")
        return
    key = crypto.generate_key(
        str(spec.get("kty") or "RSA"),
        int(spec.get("size") or 2048),
        str(spec.get("curve") or "P-256"),
    )
    subject = str(spec.get("subject") or f"CN={name}")
    months = int(spec.get("validity_months") or 12)
    if spec.get("chain"):
        world.add_certificate(
            vault, name, key, make_chain(subject, key, months), content_type, issuer_name="Unknown"
        )
        return
    cert = crypto.make_certificate(subject, key, validity_days=months * 30)
    world.add_certificate(vault, name, key, [cert], content_type, validity_months=months)


def make_chain(subject: str, key: crypto.PrivateKey, months: int = 12) -> list[Any]:
    """leaf (for `key`) <- intermediate <- root; returned leaf first."""
    root_key = crypto.generate_key("EC", curve="P-256")
    root = crypto.make_certificate(
        f"CN={subject[3:] if subject.startswith('CN=') else subject} Root CA",
        root_key,
        ca=True,
        validity_days=3650,
    )
    mid_key = crypto.generate_key("EC", curve="P-256")
    mid = crypto.make_certificate(
        f"CN={subject[3:] if subject.startswith('CN=') else subject} Intermediate CA",
        mid_key,
        issuer_cert=root,
        issuer_key=root_key,
        ca=True,
        path_length=0,
        validity_days=1825,
    )
    leaf = crypto.make_certificate(
        subject, key, issuer_cert=mid, issuer_key=mid_key, validity_days=months * 30
    )
    return [leaf, mid, root]
