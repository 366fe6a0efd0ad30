"""The end-to-end tier: a real single-node Kubernetes (`devstack.cluster`), the node plugin as a
host process registered with the real kubelet, the FlexVolume shim installed in kubelet's
plugin dir, a devstack of its own, and our NMI on the node (port 2579, so the seed pod's options
are exactly what users write; its nat rules intercept the pods' IMDS traffic).

Without the binaries or packages the tier is skipped with the reason, except under `CI=true`,
where it must run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.client import Devstack
from devstack.cluster import Cluster, missing, nodeimage
from devstack.cluster.nmi import ClusterNmi
from devstack.cluster.nodeplugin import DaemonSetPlugin, NodePlugin, flex_env, install

NMI_DEFAULT_PORT = 2579


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.timeout(600))


@pytest.fixture(scope="session")
def e2e_root() -> Iterator[Path]:
    reasons = missing()
    if reasons:
        message = "real-cluster tier cannot run: " + "; ".join(reasons)
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the binaries and packages must be installed)")
        pytest.skip(message)
    # Short and under /tmp: unix socket paths stay well below 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="kv-e2e-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def e2e_devstack(e2e_root: Path) -> Iterator[Devstack]:
    # The devstack's NMI stand-in takes any free port: 2579 is our NMI's (the `nmi` fixture).
    stack = Devstack.start(e2e_root / "devstack")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def cluster(e2e_root: Path) -> Iterator[Cluster]:
    local = Cluster(e2e_root / "cluster", kubelet_env=flex_env(e2e_root), timeout=240)
    try:
        local.up()
        install(local)
        yield local
    finally:
        problems = local.down()
        assert not problems, f"cluster teardown left: {problems}"


@pytest.fixture(scope="session", params=["host", "pod"])
def node_plugin(
    request: pytest.FixtureRequest, cluster: Cluster, e2e_devstack: Devstack, e2e_root: Path
) -> Iterator[NodePlugin | DaemonSetPlugin]:
    """Every test runs twice: with the node plugin as a host process, then as deploy/'s
    DaemonSet pod on the node image built here (mmdebstrap, no registry)."""
    plugin: NodePlugin | DaemonSetPlugin
    if request.param == "host":
        plugin = NodePlugin(e2e_root / "driver", cluster, e2e_devstack.cloud_config)
    else:
        if shutil.which("mmdebstrap") is None:
            reason = "the node image needs mmdebstrap (Debian package mmdebstrap)"
            if os.environ.get("CI") == "true":
                pytest.fail(reason + " (CI=true: it must be installed)")
            pytest.skip(reason)
        assert cluster.bin is not None
        image = nodeimage.build_and_import(
            cluster.bin.ctr, cluster.lay.containerd_socket, e2e_root / "node-image"
        )
        plugin = DaemonSetPlugin(e2e_root / "deploy", cluster, image, e2e_devstack.cloud_config)
    try:
        yield plugin.start()
    finally:
        # Pods go first (kubelet unmounts through the plugin), then the plugin.
        cluster.kubectl(
            "delete", "pods", "--all", "-n", "default", "--wait=true", "--timeout=120s",
            timeout=180, check=False,
        )  # fmt: skip
        plugin.stop()


@pytest.fixture(scope="session")
def our_nmi(cluster: Cluster, e2e_devstack: Devstack, e2e_root: Path) -> Iterator[ClusterNmi]:
    """Our NMI on the node (intercepting pods' IMDS traffic), with nothing assigned by hand:
    for tests where our MIC writes the AzureAssignedIdentities."""
    ours = ClusterNmi(cluster, e2e_devstack, e2e_root / "nmi", NMI_DEFAULT_PORT)
    ours.install_crds()
    try:
        yield ours.start()
    finally:
        ours.stop()


@pytest.fixture(scope="session")
def nmi(our_nmi: ClusterNmi) -> ClusterNmi:
    """Our NMI, with the world's identities assigned by hand as MIC would assign them."""
    our_nmi.seed()
    return our_nmi


@pytest.fixture(scope="session")
def nmi_options(nmi: ClusterNmi) -> dict[str, str]:
    """What pod-identity volumes need beyond the user's options: nothing when NMI got 2579."""
    return {} if nmi.port == NMI_DEFAULT_PORT else {"nmiport": str(nmi.port)}
