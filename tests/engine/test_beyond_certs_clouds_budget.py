"""What no upstream driver does (issue 15 item 4; issue 14 items 15 and 19), through the real
engine against the devstack: split certificates, per-volume AzureStack clouds, and the
per-vault request budget."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from azcommon.errors import InvalidArgument
from tests.engine.beyond_support import listing, yaml_attrs

# Every test here may read otherkv with the seed pod's identity.
pytestmark = pytest.mark.usefixtures("other_vault_readable")

# -- 4. split certificates -----------------------------------------------------------------------


def test_certificate_split_into_key_leaf_chain_and_bundle_with_modes(
    make_core, pod_request
) -> None:
    core = make_core()
    req = pod_request(
        yaml_attrs(
            {
                "objectName": "pfx-cert",
                "objectType": "secret",
                "objectAlias": "tls/server",
                "certParts": "key:0600,crt,chain:0444,bundle",
                "filePermission": "0640",
            }
        )
    )
    core.engine.publish(req)
    base = req.target_path / "tls"
    assert listing(base) == ["server.bundle", "server.chain", "server.crt", "server.key"]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in base.iterdir()}
    assert modes == {
        "server.key": 0o600,
        "server.crt": 0o640,
        "server.chain": 0o444,
        "server.bundle": 0o640,
    }
    key = serialization.load_pem_private_key((base / "server.key").read_bytes(), None)
    leaf = x509.load_pem_x509_certificate((base / "server.crt").read_bytes())
    chain = x509.load_pem_x509_certificates((base / "server.chain").read_bytes())
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.rfc4514_string() == "CN=pfx-cert"
    # intermediate then root
    assert len(chain) == 2 and chain[0].subject == leaf.issuer
    assert chain[1].subject == chain[1].issuer and chain[1].subject == chain[0].issuer
    bundle = (base / "server.bundle").read_bytes()
    assert (
        bundle.startswith(b"-----BEGIN PRIVATE KEY-----") and bundle.count(b"CERTIFICATE-----") == 6
    )


def test_cert_parts_of_a_plain_secret_fail_naming_the_object(make_core, pod_request) -> None:
    core = make_core()
    req = pod_request(
        yaml_attrs({"objectName": "secret1", "objectType": "secret", "certParts": "key"})
    )
    with pytest.raises(InvalidArgument, match="certParts needs a secret that backs a certificate"):
        core.engine.publish(req)


# -- issue 14 item 15: custom clouds per volume ----------------------------------------------------


def stack_env_file(path: Path, devstack: Any) -> Path:
    cloud = json.loads(Path(devstack.cloud_config).read_text())
    path.write_text(
        json.dumps(
            {
                "name": "AzureStackCloud",
                "activeDirectoryEndpoint": cloud["authority_host"] + "/",
                "keyVaultDNSSuffix": "vault.local.azurestack.external",
                "resourceIdentifiers": {"keyVault": cloud["keyvault_resource"]},
                "vault_urls": cloud["vault_urls"],
            }
        )
    )
    return path


def test_azure_stack_cloud_from_an_environment_file_per_volume(
    make_core, pod_request, devstack: Any, tmp_path: Path
) -> None:
    core = make_core()
    env = stack_env_file(tmp_path / "azurestack.json", devstack)
    req = pod_request({"cloudName": "AzureStackCloud", "cloudEnvFileName": str(env)})
    core.engine.publish(req)
    assert (req.target_path / "secret1").read_bytes() == b"testkv-secret1-value"
    # Another volume with a broken file of its own fails alone; nothing process-wide changed.
    bad = tmp_path / "broken.json"
    bad.write_text("{}")
    with pytest.raises(InvalidArgument, match="activeDirectoryEndpoint"):
        core.engine.publish(
            pod_request({"cloudName": "AzureStackCloud", "cloudEnvFileName": str(bad)})
        )
    core.engine.publish(pod_request())  # the daemon's own cloud, unaffected


def test_azure_stack_cloud_needs_its_file(make_core, pod_request) -> None:
    core = make_core()
    with pytest.raises(InvalidArgument, match="needs cloudEnvFileName"):
        core.engine.publish(pod_request({"cloudName": "AzureStackCloud"}))


# -- issue 14 item 19: the per-vault request budget ----------------------------------------------


def test_requests_past_the_vault_budget_wait_their_turn_instead_of_a_429(
    make_core, pod_request, devstack: Any
) -> None:
    core = make_core(keyvault_rate_limit=2, keyvault_rate_window=0.5)
    req = pod_request(
        {
            "keyvaultobjectnames": "app-secret-1;app-secret-2;app-secret-3;secret1",
            "keyvaultobjecttypes": "secret;secret;secret;secret",
        }
    )
    devstack.reset_counters()
    core.engine.publish(req)
    assert len(listing(req.target_path)) == 4
    assert core.metrics.rate_limited.labels("testkv")._value.get() >= 2
    assert devstack.count(vault="testkv", status=429) == 0


def test_an_environment_file_others_can_write_is_refused(
    make_core, pod_request, devstack: Any, tmp_path: Path
) -> None:
    core = make_core()
    env = stack_env_file(tmp_path / "writable.json", devstack)
    env.chmod(0o666)
    with pytest.raises(InvalidArgument, match="not writable by group or others"):
        core.engine.publish(
            pod_request({"cloudName": "AzureStackCloud", "cloudEnvFileName": str(env)})
        )
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        core.engine.publish(
            pod_request({"cloudName": "AzureStackCloud", "cloudEnvFileName": str(fifo)})
        )
