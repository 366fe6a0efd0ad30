"""Credentials for Key Vault: pod identity (NMI), service principal, VM managed identity (IMDS)
and workload identity, each an azure-core token credential, shared per identity by
`CredentialProvider`."""

from driver.auth.aad import AssertionHolder, ServicePrincipalCredential, WorkloadIdentityCredential
from driver.auth.base import KvCredential, TokenRequestHook
from driver.auth.imds import ImdsCredential
from driver.auth.nmi import NmiCredential
from driver.auth.provider import CredentialProvider

__all__ = [
    "AssertionHolder",
    "CredentialProvider",
    "ImdsCredential",
    "KvCredential",
    "NmiCredential",
    "ServicePrincipalCredential",
    "TokenRequestHook",
    "WorkloadIdentityCredential",
]
