"""Local container images, built from files on this machine (no registry, no pulls).

Both images are made of one layer holding Debian's static busybox and its applet links:

- the pause (sandbox) image runs a shell that sleeps until signalled;
- the application image (`kv-busybox:local`) has a shell, `cat`, `ls`, `sleep`, `stat` ...

Each is written as an OCI image-layout tarball and imported with `ctr -n k8s.io images import`.
Pods use `imagePullPolicy: Never`.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
import tarfile
from pathlib import Path

PAUSE_IMAGE = "docker.io/library/kv-pause:local"
APP_IMAGE = "docker.io/library/kv-busybox:local"
# The short name pods use (kubelet normalises it to APP_IMAGE).
APP_IMAGE_SHORT = "kv-busybox:local"

_APPLETS = (
    "sh", "cat", "ls", "sleep", "stat", "echo", "test", "[", "id", "mount", "find", "grep",
    "head", "tail", "wc", "sha256sum", "base64", "env", "true", "false", "date", "readlink", "touch",
)  # fmt: skip
_PAUSE = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _tar_entry(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def busybox_layer(busybox: Path) -> bytes:
    """An uncompressed layer tar: /bin/busybox, applet symlinks, /tmp, /etc/passwd."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777)):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            _tar_entry(tar, info)
        data = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(data)
        info.mode = 0o755
        _tar_entry(tar, info, data)
        for applet in _APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            _tar_entry(tar, link)
        for name, text in (
            (
                "etc/passwd",
                b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            ),
            ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            info.mode = 0o644
            _tar_entry(tar, info, text)
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes | Path) -> tuple[str, int]:
    """Add one blob (bytes, or a file streamed from disk) under blobs/sha256/."""
    if isinstance(data, Path):
        digest_obj = hashlib.sha256()
        with data.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest_obj.update(chunk)
        digest, size = "sha256:" + digest_obj.hexdigest(), data.stat().st_size
        info = tarfile.TarInfo(f"blobs/sha256/{digest.split(':', 1)[1]}")
        info.size = size
        info.mode = 0o644
        info.mtime = 0
        with data.open("rb") as f:
            tar.addfile(info, f)
        return digest, size
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest.split(':', 1)[1]}")
    info.size = len(data)
    info.mode = 0o644
    _tar_entry(tar, info, data)
    return digest, len(data)


def write_oci_archive(
    path: Path,
    name: str,
    layer: bytes | Path,
    entrypoint: list[str],
    cmd: list[str] | None = None,
    env: list[str] | None = None,
) -> Path:
    """An OCI image-layout tarball of one uncompressed layer, named `name` for
    `ctr images import`."""
    arch = _arch()
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        layer_ref = _blob(tar, layer)
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {
                "Entrypoint": entrypoint or None,
                "Cmd": cmd,
                "Env": env or ["PATH=/bin"],
                "WorkingDir": "/",
            },
            # Uncompressed layer: its diff id is its digest.
            "rootfs": {"type": "layers", "diff_ids": [layer_ref[0]]},
            "history": [{"created_by": "kv-devstack cluster"}],
        }
        config_ref = _blob(tar, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_ref[0],
                "size": config_ref[1],
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_ref[0],
                    "size": layer_ref[1],
                }
            ],
        }
        manifest_ref = _blob(tar, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_ref[0],
                    "size": manifest_ref[1],
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                    },
                }
            ],
        }
        for member, payload in (
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index).encode()),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            info.mode = 0o644
            _tar_entry(tar, info, payload)
    return path


def import_archive(ctr: Path, address: Path, archive: Path, timeout: float = 300.0) -> None:
    """Import an image tarball into containerd's Kubernetes namespace (and unpack it)."""
    result = subprocess.run(
        [str(ctr), "--address", str(address), "-n", "k8s.io", "images", "import", str(archive)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"ctr images import {archive.name} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )


def build_and_import(ctr: Path, address: Path, busybox: Path, workdir: Path) -> None:
    """Build the pause and application images and import both into containerd."""
    workdir.mkdir(parents=True, exist_ok=True)
    layer = busybox_layer(busybox)
    pause = write_oci_archive(workdir / "pause.tar", PAUSE_IMAGE, layer, _PAUSE)
    app = write_oci_archive(workdir / "busybox.tar", APP_IMAGE, layer, [], ["/bin/sh"])
    for archive in (pause, app):
        import_archive(ctr, address, archive)
