"""The built installs, shared by the deploy/ manifest tests (built once per module)."""

from __future__ import annotations

import jsonschema
import pytest

from tests.deploy.manifest_checks import DEPLOY
from tests.deploy.manifests import Doc, build, crd_validators


@pytest.fixture(scope="module")
def full() -> list[Doc]:
    return build(DEPLOY)


@pytest.fixture(scope="module")
def driver_only() -> list[Doc]:
    return build(DEPLOY / "driver")


@pytest.fixture(scope="module")
def validators(full: list[Doc]) -> dict[tuple[str, str], jsonschema.Validator]:
    return crd_validators(d for d in full if d["kind"] == "CustomResourceDefinition")
