"""The kv-driver node image, built without a registry and imported into the cluster.

The steps follow the Dockerfile's: the project wheel and its dependencies' published wheels
(made with pip on this machine, so its index and trust settings apply), installed into a
virtual environment in a minimal Debian bookworm root filesystem (`mmdebstrap`, Debian's
python3), the packaging tools removed afterwards, and `flexvolume/install.sh` and the shim
copied to /opt/kv-driver/flexvolume/. The rootfs tarball becomes the single layer of an OCI
image, imported with `ctr -n k8s.io images import`.

For the tests the image also sets `KV_CLOUD_CONFIG=/run/kv-driver/devstack/cloud.json`, so the
DaemonSet pod (whose manifest is applied unchanged apart from its image) reaches the devstack:
the node's /run/kv-driver is the pod's state-dir hostPath.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from devstack.cluster import images

NODE_IMAGE = "docker.io/library/kv-driver:e2e"
VENV = "/opt/kv-driver/venv"
CLOUD_CONFIG_IN_POD = "/run/kv-driver/devstack/cloud.json"
REPO = Path(__file__).resolve().parent.parent.parent


class ImageBuildError(RuntimeError):
    """A step of the node image build failed; the message names it and shows its output."""


def _run(step: str, argv: list[str], timeout: float, log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=out, timeout=timeout, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise ImageBuildError(f"node image: {step} failed ({result.returncode}):\n{tail}")


def wheels(dest: Path, log: Path) -> Path:
    """The project wheel plus every runtime dependency as a wheel, in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    _run(
        "pip wheel (project)",
        [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), str(REPO)],
        600,
        log,
    )
    project = sorted(dest.glob("kv_driver-*.whl"))[-1]
    # Same interpreter minor version and libc family as the rootfs (bookworm: 3.11, glibc 2.36).
    _run(
        "pip download (dependencies)",
        [*pip, "download", "--quiet", "--only-binary=:all:", "--dest", str(dest), str(project)],
        600,
        log,
    )
    return project


def rootfs(wheel_dir: Path, project: Path, out: Path, log: Path) -> Path:
    """A bookworm minbase rootfs tarball with the driver installed in a venv."""
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError(
            "node image: mmdebstrap not found: install the Debian package mmdebstrap"
        )
    flex = REPO / "flexvolume"
    hooks = [
        'mkdir -p "$1/tmp/wheels" "$1/opt/kv-driver/flexvolume/azure~kv"',
        f"sync-in {wheel_dir} /tmp/wheels",
        f'chroot "$1" python3 -m venv {VENV}',
        # Offline: only the wheels made above. The host's pip settings do not apply in there.
        f'chroot "$1" env -u PIP_FIND_LINKS -u PIP_CERT {VENV}/bin/pip install --quiet --no-cache-dir --no-index --find-links /tmp/wheels /tmp/wheels/{project.name}',
        f'chroot "$1" {VENV}/bin/pip uninstall --quiet --yes setuptools pip',
        f"copy-in {flex / 'install.sh'} /opt/kv-driver/flexvolume",
        f"copy-in '{flex / 'azure~kv' / 'kv'}' '/opt/kv-driver/flexvolume/azure~kv'",
        'chmod 0755 "$1/opt/kv-driver/flexvolume/install.sh" "$1/opt/kv-driver/flexvolume/azure~kv/kv"',
        f'ln -s {VENV}/bin/kv-csi-driver "$1/usr/local/bin/kv-csi-driver"',
        'rm -rf "$1/tmp/wheels" "$1/var/cache/apt" "$1/var/lib/apt/lists" "$1/usr/share/doc" "$1/usr/share/man"',
    ]  # fmt: skip
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--include=python3,python3-venv,iptables",
    ]
    argv += [f"--customize-hook={hook}" for hook in hooks]
    argv += ["bookworm", str(out)]
    _run("mmdebstrap", argv, 900, log)
    return out


def build_and_import(ctr: Path, address: Path, workdir: Path) -> str:
    """Build the node image under `workdir`, import it into containerd; the image name."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "build.log"
    project = wheels(workdir / "wheels", log)
    layer = rootfs(workdir / "wheels", project, workdir / "rootfs.tar", log)
    archive = images.write_oci_archive(
        workdir / "kv-driver.oci.tar",
        NODE_IMAGE,
        layer,
        ["kv-csi-driver"],
        env=[
            f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            f"KV_CLOUD_CONFIG={CLOUD_CONFIG_IN_POD}",
        ],
    )
    layer.unlink()
    images.import_archive(ctr, address, archive)
    archive.unlink()
    return NODE_IMAGE
