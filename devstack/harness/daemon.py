"""A real `kv-csi-driver` process (`python -m driver`) with its own root: state dir, CSI socket,
FlexVolume bridge socket, registration dir and log file.

It runs in the caller's mount namespace (the test suite runs under `unshare -m` as root), so its
tmpfs mounts are visible to the caller and vanish with the namespace.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import requests

from devstack.client import Devstack
from devstack.harness import attributes as attrs
from devstack.harness import world
from devstack.harness.csi_endpoint import CsiEndpoint
from devstack.harness.csi_requests import publish_request
from devstack.harness.node import csi_target
from driver.csi.proto import csi_pb2

_METRICS_LINE = re.compile(r"metrics and health on http://127\.0\.0\.1:(\d+)")


class DaemonProcess(CsiEndpoint):
    """One node plugin process: start (waiting for a ready CSI Probe), stop or kill, its log,
    metrics port, gRPC stubs (from `CsiEndpoint`), and request helpers for the seed world's
    CSI pod.

    `args` are extra command-line flags; later flags override the defaults given here."""

    def __init__(
        self,
        root: Path,
        devstack: Devstack,
        mount_mode: str,
        args: Sequence[str] = (),
        *,
        node_id: str = world.NODE_ID,
        nmi_deadline: str = "3s",
        request_timeout: str = "2s",
        metrics: bool = True,
    ) -> None:
        self.root = root
        self.devstack = devstack
        super().__init__(root / "plugins" / "csi.sock")
        self.flex_socket = root / "run" / "flex.sock"
        self.registration_dir = root / "plugins_registry"
        self.state_dir = root / "state"
        self.log_path = root / "daemon.log"
        self.args = [
            "--endpoint", f"unix://{self.csi_socket}",
            "--nodeid", node_id,
            "--state-dir", str(self.state_dir),
            "--mount-mode", mount_mode,
            "--cloud-config", str(devstack.cloud_config),
            "--flexvolume-socket", str(self.flex_socket),
            "--flexvolume-pod-source", "kubelet-options",  # no API server here
            "--nmi-deadline", nmi_deadline,
            "--request-timeout", request_timeout,
        ]  # fmt: skip
        if metrics:
            # Port 0: the daemon binds a free port itself (picking one here and handing it over
            # would race other processes) and logs it.
            self.args += ["--metrics-addr", "127.0.0.1:0"]
        self.args += args
        self.proc: subprocess.Popen[bytes] | None = None

    # -- process lifecycle -----------------------------------------------------------------------

    def start(self, wait: bool = True, timeout: float = 30.0) -> DaemonProcess:
        """Start the process; with `wait`, return once CSI Probe reports ready."""
        self.csi_socket.parent.mkdir(parents=True, exist_ok=True)
        self.registration_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # `python -m driver` must find this checkout whatever the caller's working directory.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(world.REPO), env.get("PYTHONPATH")]))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driver", *self.args],
                stdout=log,
                stderr=log,
                env=env,
                cwd=world.REPO,
            )
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop(signal.SIGKILL)  # a daemon that never got ready must not linger
                raise
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll CSI Probe until it answers ready; fail with the log if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}:\n{self.log()}")
            # Dialling before the socket exists would only put the channel into reconnect
            # backoff; a stat is cheap.
            if self.csi_socket.exists():
                try:
                    if self.identity.Probe(csi_pb2.ProbeRequest(), timeout=1).ready.value:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log()}")

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("the daemon was not started")
        return self.proc

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and wait; returns the exit status (killed after `timeout`: negative)."""
        self.close_channel()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # never leave a process behind; the caller sees the status
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def terminate(self) -> None:
        """Send SIGTERM without waiting for the exit (a graceful stop takes about half a second);
        `stop()` or a `Reaper` collects the process later."""
        self.close_channel()
        if self.running():
            self.process.send_signal(signal.SIGTERM)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what it reports -------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def metrics_port(self) -> int:
        """The port this run of the daemon bound (its latest "metrics and health on" line).

        The metrics server starts after the CSI socket answers, so the line may trail readiness
        by a moment on a busy machine: it is waited for, within a bound."""
        deadline = time.monotonic() + 15.0
        while not (ports := _METRICS_LINE.findall(self.log())):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon logged no metrics address:\n{self.log()}")
            time.sleep(0.05)
        return int(ports[-1])

    def metrics(self) -> str:
        """One scrape of /metrics, as Prometheus text."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return requests.get(url, timeout=5).text

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("VmRSS not found")

    # -- requests for the seed world's CSI pod ---------------------------------------------------

    def pod_attributes(self, pod: str = world.CSI_POD, **extra: str) -> dict[str, str]:
        """Pod-identity attributes for `pod` (one secret, `secret1`), with `extra` overrides."""
        return attrs.csi_attributes(self.devstack.nmi_port, pod=pod, extra=extra)

    def target(self, name: str) -> Path:
        """A kubelet-shaped target path under this daemon's root whose parent exists."""
        return csi_target(self.root, name)

    def publish_request(
        self, volume_id: str, target: Path, attributes: Mapping[str, str], **kw: Any
    ) -> csi_pb2.NodePublishVolumeRequest:
        return publish_request(volume_id, target, attributes, **kw)


class Reaper:
    """Daemons asked to stop but not yet waited for: callers that do not need the exit status
    (fixture teardown) go on at once, and the reaper waits for them all at the end."""

    def __init__(self) -> None:
        self._pending: list[DaemonProcess] = []

    def stop(self, daemon: DaemonProcess) -> None:
        daemon.terminate()
        self._pending.append(daemon)

    def drain(self, timeout: float = 15.0) -> None:
        """Wait for every pending daemon (SIGKILL after `timeout` each)."""
        pending, self._pending = self._pending, []
        for daemon in pending:
            daemon.stop(timeout=timeout)
