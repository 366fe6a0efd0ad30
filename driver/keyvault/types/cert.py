"""Certificates: the leaf as PEM, from the certificate's `cer` (DER) as Key Vault returns it."""

from __future__ import annotations

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.keyvault.certificates import CertificateClient, KeyVaultCertificate
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from azcommon.errors import InvalidArgument
from driver.keyvault.objects import CertValue, Fetched
from driver.keyvault.types.base import (
    Listed,
    ObjectKind,
    VaultObjects,
    VersionInfo,
    client_options,
    mismatch,
    where,
)
from driver.model import FileContent, ObjectSpec, ObjectType


class _Certificates:
    def __init__(self, client: CertificateClient) -> None:
        self._client = client

    def get(self, name: str, version: str) -> Fetched:
        cert: KeyVaultCertificate
        if version:
            cert = self._client.get_certificate_version(name, version)
        else:
            cert = self._client.get_certificate(name)
        found = cert.properties.version if cert.properties else None
        return CertValue(found or "", bytes(cert.cer or b""))

    def versions(self, name: str) -> list[VersionInfo]:
        return [
            VersionInfo(p.version or "", p.enabled, p.created_on)
            for p in self._client.list_properties_of_certificate_versions(name)
        ]

    def names(self) -> list[Listed]:
        return [
            Listed(p.name or "", p.enabled, dict(p.tags or {}), bool(getattr(p, "managed", False)))
            for p in self._client.list_properties_of_certificates()
            if p.name
        ]


class Cert(ObjectKind):
    """`cert` objects."""

    type = ObjectType.CERT
    get_operation = "certificate.get"
    list_operation = "cert.versions"
    names_operation = "certificate.list"

    def open(
        self,
        vault_url: str,
        credential: TokenCredential,
        transport: HttpTransport,  # type: ignore[type-arg]
    ) -> VaultObjects:
        return _Certificates(CertificateClient(vault_url, credential, **client_options(transport)))

    def render(self, obj: ObjectSpec, value: Fetched) -> bytes:
        if not isinstance(value, CertValue):
            raise mismatch(obj, value)
        at = where(obj, value.version)
        if not value.cer:
            raise InvalidArgument(f"{at}: the certificate has no content (empty cer)")
        try:
            cert = x509.load_der_x509_certificate(value.cer)
        except ValueError:
            raise InvalidArgument(f"{at}: the certificate (cer) is not valid DER X.509") from None
        if obj.content is FileContent.UPSTREAM:
            return value.cer  # the azure/kv driver wrote the DER leaf
        return cert.public_bytes(serialization.Encoding.PEM)


CERT = Cert()
