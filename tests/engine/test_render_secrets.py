"""Plain secrets are written as their bytes, decoded per objectEncoding, and bad input fails
without leaking the value."""

from __future__ import annotations

import base64

import pytest

from azcommon.errors import InvalidArgument
from driver.keyvault.render import render
from tests.engine.render_support import (
    Chain,
    assert_names_object,
    obj,
    pfx_from,
    render_data,
    secret,
)

# --------------------------------------------------------------------------------------------
# Plain secrets and objectEncoding


def test_utf8_secret_is_written_as_utf8_bytes() -> None:
    value = "pässwörd ✓ with spaces\nand a newline"
    assert render_data(obj(), secret(value)) == value.encode("utf-8")


@pytest.mark.parametrize(
    "stored",
    [
        "AAECAwT/",  # padded
        "AAECAwT/\n",
        "AAEC\nAwT/",  # wrapped lines as `base64` writes them
        "  AAECAwT/  ",
    ],
)
def test_base64_secret_is_decoded(stored: str) -> None:
    spec = obj(name="blob", encoding="base64")
    assert render_data(spec, secret(stored)) == bytes([0, 1, 2, 3, 4, 255])


@pytest.mark.parametrize(
    ("stored", "raw"), [("AAE", b"\x00\x01"), ("AA", b"\x00"), ("AA=", b"\x00")]
)
def test_base64_without_padding_is_accepted(stored: str, raw: bytes) -> None:
    assert render_data(obj(name="blob", encoding="base64"), secret(stored)) == raw


@pytest.mark.parametrize("stored", ["hunter2-is-not-base64!", "QUJD_-", "QUJDR", "QUJD€"])
def test_invalid_base64_fails_without_leaking_the_value(stored: str) -> None:
    spec = obj(name="blob", encoding="base64")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(stored)])
    assert_names_object(info.value, spec)
    assert "base64" in str(info.value)
    assert stored not in str(info.value)
    assert info.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize("stored", ["00ff10ab", "00FF10AB", "00 ff 10 ab", "00ff\n10ab\n"])
def test_hex_secret_is_decoded(stored: str) -> None:
    assert render_data(obj(name="h", encoding="hex"), secret(stored)) == b"\x00\xff\x10\xab"


@pytest.mark.parametrize("stored", ["s3cr3tzz", "f0f0f", "0x00ff"])
def test_invalid_hex_fails_without_leaking_the_value(stored: str) -> None:
    spec = obj(name="h", encoding="hex")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret(stored)])
    assert_names_object(info.value, spec)
    assert "hex" in str(info.value)
    assert stored not in str(info.value)


def test_text_that_is_not_encodable_as_utf8_is_rejected() -> None:
    # JSON may carry a lone surrogate ("\ud800"); it has no UTF-8 form.
    spec = obj(name="odd")
    with pytest.raises(InvalidArgument) as info:
        render(spec, [secret("top\ud800secret")])
    assert_names_object(info.value, spec)
    assert "top" not in str(info.value)


def test_plain_secret_with_pfx_format_is_decoded_per_encoding(rsa_chain: Chain) -> None:
    # A PFX uploaded as a plain secret (no certificate content type) is just bytes to us.
    pfx = pfx_from(rsa_chain.key, rsa_chain.leaf, [])
    spec = obj(name="raw-pfx", format="pfx", encoding="base64")
    assert render_data(spec, secret(base64.b64encode(pfx).decode())) == pfx
