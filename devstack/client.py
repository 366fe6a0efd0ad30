"""Python handle on a running devstack, for tests, benchmarks and the demo.

    stack = Devstack.start(tmp_dir)           # runs `python -m devstack up` in a subprocess
    version = stack.set_secret("testkv", "secret1", "new value")
    stack.fault(vault="testkv", latency_ms=25)
    stack.stop()

or `Devstack.load(state_dir)` to attach to one already running. Only the standard library is
used, so the CLI and scripts can import it cheaply."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.adminclient import SA_AUDIENCE, AdminClient, DevstackError

__all__ = ["SA_AUDIENCE", "STATE_FILE", "Devstack", "DevstackError"]

STATE_FILE = "devstack.json"


@dataclass
class Devstack(AdminClient):
    """A devstack's description (its devstack.json), its admin API, and its process when this
    handle started it."""

    state_dir: Path
    ca_bundle: str
    tenant_id: str
    authority_host: str
    imds_endpoint: str
    nmi_port: int
    admin_url: str
    keyvault_resource: str
    vaults: dict[str, dict[str, str]]
    admin: dict[str, str]
    identities: dict[str, dict[str, str]]
    pods: dict[str, dict[str, Any]]
    federations: list[dict[str, str]]
    cloud_config: str
    pid: int
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    arm: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def load(cls, state_dir: str | os.PathLike[str]) -> Devstack:
        path = Path(state_dir) / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DevstackError(f"cannot read {path}: {exc}") from None
        return cls.from_state(Path(state_dir), raw)

    @classmethod
    def from_state(cls, state_dir: Path, raw: dict[str, Any]) -> Devstack:
        return cls(
            state_dir=state_dir,
            ca_bundle=raw["ca_bundle"],
            tenant_id=raw["tenant_id"],
            authority_host=raw["authority_host"],
            imds_endpoint=raw["imds_endpoint"],
            nmi_port=int(raw["nmi_port"]),
            admin_url=raw["admin_url"],
            keyvault_resource=raw["keyvault_resource"],
            vaults=raw["vaults"],
            admin=raw["admin"],
            identities=raw["identities"],
            pods=raw["pods"],
            federations=raw.get("federations", []),
            cloud_config=raw["cloud_config"],
            pid=int(raw["pid"]),
            raw=raw,
            arm=raw.get("arm", {}),
        )

    @classmethod
    def start(
        cls,
        state_dir: str | os.PathLike[str],
        seed: str | os.PathLike[str] | None = None,
        timeout: float = 20.0,
        extra_args: list[str] | None = None,
    ) -> Devstack:
        """Run `python -m devstack up` and wait until it has written devstack.json."""
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        state_file = directory / STATE_FILE
        state_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "devstack", "up", "--state-dir", str(directory)]
        if seed is not None:
            argv += ["--seed", str(seed)]
        argv += extra_args or []
        log_file = open(directory / "devstack.log", "ab")  # noqa: SIM115 - owned by the child
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        try:
            process = subprocess.Popen(argv, stdout=log_file, stderr=log_file, env=env)
        finally:
            log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DevstackError(
                    f"devstack exited with status {process.returncode} before it was ready; "
                    f"see {directory / 'devstack.log'}"
                )
            if state_file.exists():
                try:
                    raw = json.loads(state_file.read_text())
                except ValueError:
                    raw = {}
                if raw.get("pid") == process.pid:
                    stack = cls.from_state(directory, raw)
                    stack.process = process
                    return stack
            time.sleep(0.05)
        process.kill()
        process.wait()
        raise DevstackError(f"devstack did not become ready within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop a devstack this handle started (SIGTERM, then SIGKILL); its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    # --- convenience -----------------------------------------------------------------------

    @property
    def imds_host(self) -> str:
        """Base URL of the IMDS stand-in: the value for AZURE_POD_IDENTITY_AUTHORITY_HOST."""
        return self.imds_endpoint.split("/metadata/", 1)[0]

    def vault_url(self, vault: str) -> str:
        return self.vaults[vault]["url"]

    def client_id(self, identity: str) -> str:
        return self.identities[identity]["client_id"]

    def client_secret(self, identity: str) -> str:
        return self.identities[identity]["client_secret"]

    # --- Azure Resource Manager ------------------------------------------------------------

    @property
    def arm_endpoint(self) -> str:
        """Base URL for `ComputeManagementClient(base_url=...)`."""
        return str(self.arm["endpoint"])

    @property
    def subscription_id(self) -> str:
        return str(self.arm["subscription_id"])

    def resource_id(self, identity: str) -> str:
        """A user-assigned identity's ARM resource id."""
        return self.identities[identity]["resource_id"]

    def node_imds_host(self, node: str) -> str:
        """AZURE_POD_IDENTITY_AUTHORITY_HOST for code that should run as `node`."""
        return str(self.arm["nodes"][node]["imds_host"])

    def provider_id(self, node: str) -> str:
        """The node's Kubernetes `spec.providerID` (azure:///subscriptions/...)."""
        return str(self.arm["nodes"][node]["provider_id"])
