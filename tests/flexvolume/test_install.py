"""The installer the FlexVolume DaemonSet runs, into a temporary plugin directory."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.harness.shim import check_output
from devstack.harness.world import SHIM
from devstack.harness.world import SHIM_INSTALLER as INSTALLER


def install(target: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TARGET_DIR": str(target),
        "KEEP_RUNNING": "false",
        **env,
    }
    return subprocess.run(
        ["sh", str(INSTALLER)], env=full_env, capture_output=True, text=True, timeout=60
    )


def installed(target: Path) -> Path:
    return target / "azure~kv" / "kv"


def test_installs_atomically_and_idempotently(tmp_path: Path) -> None:
    target = tmp_path / "volume" / "exec"
    first = install(target)
    assert first.returncode == 0, first.stderr
    assert "installed" in first.stdout
    second = install(target)
    assert second.returncode == 0, second.stderr
    assert "already up to date" in second.stdout

    shim = installed(target)
    assert shim.read_bytes() == SHIM.read_bytes()
    assert stat.S_IMODE(shim.stat().st_mode) == 0o755
    # No temporary files left where kubelet's prober looks.
    assert [p.name for p in target.iterdir()] == ["azure~kv"]
    assert [p.name for p in shim.parent.iterdir()] == ["kv"]


def test_reinstall_replaces_an_outdated_shim_and_restores_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "exec"
    shim = installed(target)
    shim.parent.mkdir(parents=True)
    shim.write_text("#!/bin/sh\necho old\n")
    shim.chmod(0o600)
    result = install(target)
    assert result.returncode == 0, result.stderr
    assert shim.read_bytes() == SHIM.read_bytes()
    assert stat.S_IMODE(shim.stat().st_mode) == 0o755


def test_pinned_interpreter_runs_the_installed_shim_through_its_shebang(tmp_path: Path) -> None:
    target = tmp_path / "exec"
    result = install(target, SHIM_PYTHON=sys.executable)
    assert result.returncode == 0, result.stderr
    shim = installed(target)
    first, _, rest = shim.read_bytes().partition(b"\n")
    assert first == f"#!{sys.executable} -IS".encode()
    assert rest == SHIM.read_bytes().partition(b"\n")[2]
    # Exec'd directly, as kubelet does.
    proc = subprocess.run([str(shim), "init"], capture_output=True, timeout=60, env={})
    assert check_output(proc).reply == {"status": "Success", "capabilities": {"attach": False}}
    again = install(target, SHIM_PYTHON=sys.executable)
    assert "already up to date" in again.stdout


@pytest.mark.parametrize("value", ["python3", "/usr/bin/python3 -I"])
def test_rejects_a_pinned_interpreter_that_cannot_be_a_shebang(tmp_path: Path, value: str) -> None:
    result = install(tmp_path, SHIM_PYTHON=value)
    assert result.returncode != 0
    assert "SHIM_PYTHON" in result.stderr
    assert not installed(tmp_path).exists()


def test_missing_shim_fails_clearly_and_installs_nothing(tmp_path: Path) -> None:
    result = install(tmp_path / "exec", SHIM_SRC=str(tmp_path / "nope"))
    assert result.returncode != 0
    assert "shim not found" in result.stderr
    assert not installed(tmp_path / "exec").exists()


def test_keeps_running_after_installing_until_terminated(tmp_path: Path) -> None:
    target = tmp_path / "exec"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TARGET_DIR": str(target)}
    proc = subprocess.Popen(
        ["sh", str(INSTALLER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not installed(target).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert installed(target).read_bytes() == SHIM.read_bytes()
        assert proc.poll() is None, "the installer exited; the DaemonSet pod would restart"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def fake_host(root: Path, python: str | None, link: str | None = None) -> Path:
    """A host filesystem with (or without) a python3, as the installer sees it under HOST_ROOT."""
    (root / "usr" / "bin").mkdir(parents=True)
    if python is not None:
        real = root / python.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_text("#!/bin/sh\n")
        real.chmod(0o755)
        if link is not None:
            # An absolute link, as Debian's alternatives make: a host path, not the container's.
            (root / link.lstrip("/")).symlink_to(python)
    return root


def test_a_node_without_python3_fails_the_install_early_with_a_clear_message(
    tmp_path: Path,
) -> None:
    host = fake_host(tmp_path / "host", None)
    target = tmp_path / "exec"
    result = install(target, HOST_ROOT=str(host))
    assert result.returncode == 1
    assert "this node has no python3" in result.stderr
    assert "install python3" in result.stderr
    # Nothing kubelet would try to execute (and fail on silently at the first mount).
    assert not installed(target).exists()


def test_a_node_with_python3_behind_an_absolute_symlink_installs(tmp_path: Path) -> None:
    host = fake_host(tmp_path / "host", "/usr/lib/python3.11/bin/python3.11", "/usr/bin/python3")
    target = tmp_path / "exec"
    result = install(target, HOST_ROOT=str(host))
    assert result.returncode == 0, result.stderr
    assert "the node has /usr/bin/python3" in result.stdout
    assert installed(target).read_bytes() == SHIM.read_bytes()


def test_a_pinned_interpreter_missing_on_the_node_is_named(tmp_path: Path) -> None:
    host = fake_host(tmp_path / "host", "/usr/bin/python3")
    target = tmp_path / "exec"
    result = install(target, HOST_ROOT=str(host), SHIM_PYTHON="/opt/python/bin/python3")
    assert result.returncode == 1
    assert "no executable /opt/python/bin/python3" in result.stderr
    assert not installed(target).exists()
