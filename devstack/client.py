"""Python handle on a running devstack, for tests, benchmarks and the demo.

    stack = Devstack.start(tmp_dir)           # runs `python -m devstack up` in a subprocess
    version = stack.set_secret("testkv", "secret1", "new value")
    stack.fault(vault="testkv", latency_ms=25)
    stack.stop()

or `Devstack.load(state_dir)` to attach to one already running. Only the standard library is
used, so the CLI and scripts can import it cheaply."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "devstack.json"
SA_AUDIENCE = "api://AzureADTokenExchange"


class DevstackError(RuntimeError):
    """The devstack could not be started, or its admin API refused a request."""


@dataclass
class Devstack:
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

    # --- admin API -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.admin_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = json.loads(detail)["error"]["message"]
            raise DevstackError(f"devstack admin {method} {path}: {exc.code} {detail}") from None
        except urllib.error.URLError as exc:
            raise DevstackError(
                f"devstack admin API at {self.admin_url} unreachable: {exc.reason}"
            ) from None

    def set_secret(self, vault: str, name: str, value: str, content_type: str | None = None) -> str:
        """Add a new version of a secret; returns the version id."""
        body: dict[str, Any] = {"value": value}
        if content_type is not None:
            body["content_type"] = content_type
        return str(self._call("POST", f"/vaults/{vault}/secrets/{name}", body)["version"])

    def set_secret_enabled(self, vault: str, name: str, version: str, enabled: bool) -> None:
        self._call(
            "POST", f"/vaults/{vault}/secrets/{name}/{version}/enabled", {"enabled": enabled}
        )

    def delete_secret(self, vault: str, name: str) -> None:
        self._call("DELETE", f"/vaults/{vault}/secrets/{name}")

    def create_key(
        self, vault: str, name: str, kty: str = "RSA", size: int = 2048, curve: str = "P-256"
    ) -> str:
        return str(
            self._call(
                "POST", f"/vaults/{vault}/keys/{name}", {"kty": kty, "size": size, "curve": curve}
            )["version"]
        )

    def create_certificate(self, vault: str, name: str, **spec: Any) -> dict[str, str]:
        """Self-signed (kty, size, curve, subject, content_type, chain) or imported (pem=...,
        or pfx_base64=... with password=...); returns {"id", "sid", "kid", "version"}."""
        result: dict[str, str] = self._call("POST", f"/vaults/{vault}/certificates/{name}", spec)
        return result

    def set_policy(self, vault: str, identity: str, **permissions: list[str]) -> None:
        self._call("PUT", f"/vaults/{vault}/policies/{identity}", permissions)

    def sa_token(
        self,
        namespace: str,
        service_account: str,
        audience: str = SA_AUDIENCE,
        expires_in: int = 3600,
    ) -> str:
        body = {
            "namespace": namespace,
            "service_account": service_account,
            "audience": audience,
            "expires_in": expires_in,
        }
        return str(self._call("POST", "/sa-token", body)["token"])

    def trust_sa_issuer(self, issuer: str, public_key_pem: str) -> None:
        """Let workload-identity federations accept a real cluster's service-account tokens."""
        self._call("POST", "/sa-issuers", {"issuer": issuer, "public_key_pem": public_key_pem})

    def access_token(
        self,
        identity: str | None = None,
        resource: str | None = None,
        expires_in: int | None = None,
    ) -> str:
        """A signed access token minted directly (for tests of expired/wrong-audience tokens)."""
        body: dict[str, Any] = {}
        if identity is not None:
            body["identity"] = identity
        if resource is not None:
            body["resource"] = resource
        if expires_in is not None:
            body["expires_in"] = expires_in
        return str(self._call("POST", "/tokens", body)["access_token"])

    def fault(self, **kw: Any) -> None:
        """Set a fault rule: vault, endpoint, latency_ms, rate_429, rate_503, drop, retry_after."""
        self._call("POST", "/faults", kw)

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def counters(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/counters")["requests"]
        return result

    def count(
        self, vault: str | None = None, operation: str | None = None, status: int | None = None
    ) -> int:
        return sum(
            int(c["count"])
            for c in self.counters()
            if (vault is None or c["vault"] == vault)
            and (operation is None or c["operation"] == operation)
            and (status is None or c["status"] == status)
        )

    def reset_counters(self) -> None:
        self._call("POST", "/counters/reset")

    def revoke(self, identity: str) -> None:
        self._call("POST", f"/identities/{identity}/revoke")
