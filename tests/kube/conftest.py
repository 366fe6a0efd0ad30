"""An API server alone for the Kubernetes access layer's tests (skipped without the binaries,
except under CI=true)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.cluster import missing
from devstack.cluster.apiserver import ApiServer


@pytest.fixture(scope="session")
def apiserver() -> Iterator[ApiServer]:
    reasons = [r for r in missing() if "etcd" in r or "apiserver" in r or "kubectl" in r]
    if reasons:
        message = "API server tests cannot run: " + "; ".join(reasons)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="kv-api-", dir="/tmp"))
    api = ApiServer(root / "api").up()
    try:
        yield api
    finally:
        api.down()
        shutil.rmtree(root, ignore_errors=True)
