"""An engine wired exactly as the daemon wires it, pointed at the devstack."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from azcommon.cloud import Cloud, load_cloud_config
from azcommon.http import make_session
from devstack.client import Devstack
from devstack.harness import world
from devstack.harness.attributes import csi_attributes
from devstack.harness.engine import core_settings
from driver.app import Core, build_core
from driver.auth.provider import CredentialProvider
from driver.config import Settings
from driver.contract import PublishRequest
from tests.engine.auth_support import Hooks
from tests.engine.render_support import Chain, make_cert, make_chain


@pytest.fixture
def make_core(devstack: Devstack, tmp_path: Path, mount_mode: str) -> Iterator[Callable[..., Core]]:
    cores: list[Core] = []

    def make(**overrides: Any) -> Core:
        core = build_core(core_settings(tmp_path / "state", devstack, mount_mode, **overrides))
        core.upkeep.restore()
        cores.append(core)
        return core

    yield make
    for core in cores:
        for record in core.ledger.all():
            core.engine.unpublish(record.volume_id, Path(record.target_path))
        core.close()


@pytest.fixture
def pod_request(tmp_path: Path, devstack: Devstack) -> Callable[..., PublishRequest]:
    """A CSI-style request for the seed pod, with pod identity, overridable (None removes a
    key)."""

    def make(attributes: dict[str, str | None] | None = None, **kw: Any) -> PublishRequest:
        attrs = csi_attributes(
            devstack.nmi_port, uid=str(uuid.uuid4()), ephemeral=False, extra=attributes
        )
        kw.setdefault("volume_id", f"vol-{uuid.uuid4().hex[:12]}")
        kw.setdefault("target_path", tmp_path / "pods" / kw["volume_id"] / "mount")
        Path(kw["target_path"]).parent.mkdir(parents=True, exist_ok=True)
        return PublishRequest(attributes=attrs, **kw)

    return make


# Key material for the rendering tests (test_render_*.py), made once per module.


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module", params=["P-256", "P-384", "P-521"])
def ec_key(request: pytest.FixtureRequest) -> tuple[str, ec.EllipticCurvePrivateKey]:
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
    return request.param, ec.generate_private_key(curve[request.param])


@pytest.fixture(scope="module")
def rsa_chain(rsa_key: rsa.RSAPrivateKey) -> Chain:
    return make_chain(rsa_key, "rsa")


@pytest.fixture(scope="module")
def ec_chain() -> Chain:
    return make_chain(ec.generate_private_key(ec.SECP256R1()), "ec")


@pytest.fixture(scope="module", params=["rsa", "ec"])
def chain(request: pytest.FixtureRequest, rsa_chain: Chain, ec_chain: Chain) -> Chain:
    return rsa_chain if request.param == "rsa" else ec_chain


@pytest.fixture(scope="module")
def stranger() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return make_cert("unrelated root", key.public_key(), key, ca=True)


# A credential provider as the daemon builds it, for the credential tests (test_auth_*.py).


@pytest.fixture
def cloud(devstack: Devstack) -> Cloud:
    return load_cloud_config(Path(devstack.cloud_config))


@pytest.fixture
def session(cloud: Cloud) -> Iterator[requests.Session]:
    s = make_session(cloud.ca_bundle)
    yield s
    s.close()


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def provider(session: requests.Session, hooks: Hooks) -> CredentialProvider:
    return CredentialProvider(
        session, Settings(nmi_deadline=10.0, request_timeout=5.0), on_token_request=hooks
    )


@pytest.fixture(scope="module")
def other_vault_readable(devstack: Devstack) -> None:
    """The seed pod's identity may read otherkv too (the seed grants it testkv only); the
    beyond-upstream modules ask for this with `pytestmark`."""
    devstack.set_policy(world.OTHER_VAULT, "pod-identity", secrets=["get", "list"])
