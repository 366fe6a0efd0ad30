"""Key Vault certificates (the public part) are written as PEM; malformed ones are invalid."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from azcommon.errors import InvalidArgument
from driver.keyvault.objects import CertValue
from driver.keyvault.render import render
from driver.model import ObjectType
from tests.engine.render_support import (
    VERSION,
    Chain,
    assert_names_object,
    fingerprints,
    obj,
    pem_blocks,
    render_data,
)

# --------------------------------------------------------------------------------------------
# Certificates


def test_cert_renders_as_pem(rsa_chain: Chain) -> None:
    der = rsa_chain.leaf.public_bytes(serialization.Encoding.DER)
    data = render_data(obj(ObjectType.CERT, "web"), CertValue(version=VERSION, cer=der))
    assert [label for label, _ in pem_blocks(data)] == ["CERTIFICATE"]
    assert fingerprints([x509.load_pem_x509_certificate(data)]) == fingerprints([rsa_chain.leaf])


@pytest.mark.parametrize("cer", [b"", b"\x30\x03garbage-cert-bytes"])
def test_malformed_cert_is_invalid(cer: bytes) -> None:
    spec = obj(ObjectType.CERT, "web")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [CertValue(version=VERSION, cer=cer)])
    assert_names_object(info.value, spec)
    assert "garbage" not in str(info.value)
