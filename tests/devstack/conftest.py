"""Helpers for the devstack tests: official SDK clients configured the documented way, and a
second devstack with a custom seed for tests that change identities or need fresh timings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import (
    ClientAssertionCredential,
    ClientSecretCredential,
    ManagedIdentityCredential,
)
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives import serialization

from devstack import crypto
from devstack.client import Devstack


def sp_credential(ds: Devstack, identity: str, secret: str | None = None) -> ClientSecretCredential:
    return ClientSecretCredential(
        ds.tenant_id,
        ds.client_id(identity),
        secret if secret is not None else ds.client_secret(identity),
        authority=ds.authority_host,
        connection_verify=ds.ca_bundle,
        disable_instance_discovery=True,
    )


def workload_credential(
    ds: Devstack, identity: str = "workload", namespace: str = "default", sa: str = "workload-sa"
) -> ClientAssertionCredential:
    return ClientAssertionCredential(
        ds.tenant_id,
        ds.client_id(identity),
        lambda: ds.sa_token(namespace, sa),
        authority=ds.authority_host,
        connection_verify=ds.ca_bundle,
        disable_instance_discovery=True,
    )


def admin_credential(ds: Devstack) -> ClientSecretCredential:
    return sp_credential(ds, "admin")


def client_kwargs(ds: Devstack) -> dict[str, Any]:
    return {"verify_challenge_resource": False, "connection_verify": ds.ca_bundle}


def secret_client(ds: Devstack, credential: Any, vault: str = "testkv") -> SecretClient:
    return SecretClient(ds.vault_url(vault), credential, **client_kwargs(ds))


def key_client(ds: Devstack, credential: Any, vault: str = "testkv") -> KeyClient:
    return KeyClient(ds.vault_url(vault), credential, **client_kwargs(ds))


def cert_client(ds: Devstack, credential: Any, vault: str = "testkv") -> CertificateClient:
    return CertificateClient(ds.vault_url(vault), credential, **client_kwargs(ds))


def admin_token(ds: Devstack) -> str:
    """A real token from the token endpoint (v2), for raw HTTP tests."""
    response = requests.post(
        f"{ds.authority_host}/{ds.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": ds.admin["client_id"],
            "client_secret": ds.admin["client_secret"],
            "scope": "https://vault.azure.net/.default",
        },
        verify=ds.ca_bundle,
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture
def imds_env(devstack: Devstack, monkeypatch: pytest.MonkeyPatch) -> Devstack:
    """Point ManagedIdentityCredential at the devstack's IMDS."""
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", devstack.imds_host)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return devstack


def managed_credential(client_id: str | None = None) -> ManagedIdentityCredential:
    return (
        ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    )


def write_chain_pem(directory: Path) -> Path:
    """A PEM bundle (key + leaf + intermediate + root) for import tests."""
    from devstack.seed import make_chain

    key = crypto.generate_key("EC", curve="P-384")
    chain = make_chain("CN=seeded-pem", key)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ) + b"".join(crypto.cert_pem(c) for c in chain)
    path = directory / "chain.pem"
    path.write_bytes(pem)
    return path


CUSTOM_SEED = """
tenant_id: 22222222-2222-2222-2222-222222222222
admin: boss
identities:
  boss: {kind: service-principal, client_id: b0000000-0000-0000-0000-000000000001, client_secret: boss-secret}
  reader: {kind: service-principal, client_id: b0000000-0000-0000-0000-000000000002, client_secret: reader-secret}
  uami: {kind: user-assigned, client_id: b0000000-0000-0000-0000-000000000003}
vaults:
  seedkv:
    access_policies:
      reader: {secrets: [get, list]}
      uami: {secrets: [get]}
    secrets:
      multi:
        versions:
          - {value: first}
          - {value: second, enabled: false}
    certificates:
      from-pem: {pem_file: chain.pem, content_type: application/x-pem-file}
pods:
  ns1/late-pod: {identity: uami, delay_seconds: 6}
  ns1/ready-pod: {identity: uami}
"""


@pytest.fixture(scope="module")
def custom_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    directory = tmp_path_factory.mktemp("custom-devstack")
    write_chain_pem(directory)
    seed = directory / "seed.yaml"
    seed.write_text(CUSTOM_SEED)
    stack = Devstack.start(directory / "state", seed=seed)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Object names private to one test (the session devstack is shared)."""
    base = request.node.name.replace("_", "-").replace("[", "-").replace("]", "")[:60]

    def make(suffix: str = "") -> str:
        return f"t-{base}{'-' + suffix if suffix else ''}"[:120]

    return make


# --- Azure Resource Manager -----------------------------------------------------------------

ARM_SEED = """
tenant_id: 44444444-4444-4444-4444-444444444444
admin: boss
identities:
  boss: {kind: service-principal, client_id: c0000000-0000-0000-0000-000000000001, client_secret: boss-secret}
  mic: {kind: service-principal, client_id: c0000000-0000-0000-0000-000000000002, client_secret: mic-secret}
  limited: {kind: service-principal, client_id: c0000000-0000-0000-0000-000000000003, client_secret: limited-secret}
  outsider: {kind: service-principal, client_id: c0000000-0000-0000-0000-000000000004, client_secret: outsider-secret}
  node-system: {kind: system-assigned, client_id: c0000000-0000-0000-0000-000000000005}
  id-a: {kind: user-assigned, client_id: c0000000-0000-0000-0000-00000000000a}
  id-b: {kind: user-assigned, client_id: c0000000-0000-0000-0000-00000000000b}
  id-c: {kind: user-assigned, client_id: c0000000-0000-0000-0000-00000000000c}
  id-d: {kind: user-assigned, client_id: c0000000-0000-0000-0000-00000000000d,
         resource_id: /subscriptions/66666666-6666-6666-6666-666666666666/resourceGroups/other-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-d}
vaults:
  armkv:
    access_policies:
      id-a: {secrets: [get]}
      id-c: {secrets: [get]}
    secrets:
      armsecret: {value: arm-secret-value}
arm:
  subscription_id: 55555555-5555-5555-5555-555555555555
  default_node: node-a
  operators:
    mic: ["*"]
    limited: [id-a]
  virtual_machines:
    vm-a: {node: node-a, system_identity: node-system}
    vm-b: {node: node-b}
    vm-c: {node: node-c, identities: [id-a]}
    vm-slow: {node: node-slow, operation_seconds: 4}
    vm-queue: {node: node-queue, operation_seconds: 1}
    vm-elsewhere: {node: node-elsewhere, subscription_id: 66666666-6666-6666-6666-666666666666,
                   resource_group: other-rg}
  scale_sets:
    ss-1: {instances: {"0": ss-1-node-0, "1": ss-1-node-1}}
"""
ARM_RG = "devstack-nodes"


@pytest.fixture(scope="module")
def arm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    """A devstack of its own with VMs, a scale set and operators (tests change them)."""
    directory = tmp_path_factory.mktemp("arm-devstack")
    seed = directory / "seed.yaml"
    seed.write_text(ARM_SEED)
    stack = Devstack.start(directory / "state", seed=seed)
    try:
        yield stack
    finally:
        stack.stop()


def compute_client(ds: Devstack, identity: str = "mic", subscription: str | None = None) -> Any:
    """The official ComputeManagementClient, configured for the devstack's ARM."""
    from azure.mgmt.compute import ComputeManagementClient

    return ComputeManagementClient(
        sp_credential(ds, identity),
        subscription or ds.subscription_id,
        base_url=ds.arm_endpoint,
        credential_scopes=["https://management.azure.com/.default"],
        connection_verify=ds.ca_bundle,
    )
