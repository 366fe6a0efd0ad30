"""Running the azure/kv FlexVolume shim as a real subprocess, exactly as kubelet does:
`<driver> <call> [args...]` with the options map as one Go-marshalled JSON word, a bare
environment, and exactly one JSON object expected on stdout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.harness import world

REPLY_STATUSES = ("Success", "Failure", "Not supported")


class ShimContractError(AssertionError):
    """The shim broke the FlexVolume output contract kubelet relies on."""


@dataclass(frozen=True)
class ShimResult:
    """One call's reply (the parsed JSON object), exit status and wall time."""

    reply: dict[str, object]
    returncode: int
    elapsed_ms: float = 0.0

    @property
    def status(self) -> object:
        return self.reply.get("status")

    @property
    def message(self) -> str:
        message = self.reply.get("message", "")
        if not isinstance(message, str):
            raise ShimContractError(f"message is not a string: {self.reply!r}")
        return message


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ShimContractError(message)


def parse_one_json_object(stdout: bytes) -> dict[str, object]:
    """kubelet's view: the whole output must be exactly one JSON object."""
    text = stdout.decode("utf-8").lstrip()
    value, end = json.JSONDecoder().raw_decode(text)
    _require(text[end:].strip() == "", f"more than one JSON value on stdout: {text!r}")
    _require(isinstance(value, dict), f"stdout is not a JSON object: {text!r}")
    return dict(value)


def check_output(proc: subprocess.CompletedProcess[bytes], elapsed_ms: float = 0.0) -> ShimResult:
    """The FlexVolume output contract: nothing on stderr, one JSON object with a known status,
    a message with every non-Success status, and exit status 0 exactly on Success."""
    _require(proc.stderr == b"", f"the shim wrote to stderr: {proc.stderr!r}")
    reply = parse_one_json_object(proc.stdout)
    status = reply.get("status")
    _require(status in REPLY_STATUSES, f"unknown status: {reply!r}")
    if status != "Success":
        message = reply.get("message")
        _require(isinstance(message, str) and bool(message), f"no message: {reply!r}")
    expected = 0 if status == "Success" else 1
    _require(proc.returncode == expected, f"exit status {proc.returncode} with {reply!r}")
    return ShimResult(reply, proc.returncode, elapsed_ms)


def shim_command(python: str | None = None) -> list[str]:
    """The shim run as the installer pins it: the interpreter isolated from the environment and
    from site-packages (`python3 -I -S`)."""
    return [python or sys.executable, "-I", "-S", str(world.SHIM)]


def system_python() -> str:
    """The node's system interpreter, as kubelet would find it; else the one running us."""
    for candidate in ("/usr/bin/python3", "/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("python3") or sys.executable


def run_shim(
    args: Sequence[str],
    *,
    socket: Path,
    log: Path | str,
    executable: Sequence[str] | None = None,
    path: str | None = None,
    timeout: float = 60.0,
) -> ShimResult:
    """Exec the shim as kubelet would (`kv <call> ...`) and check the output contract.

    `executable` defaults to this interpreter running the repository's shim; `path` is the PATH
    the shim sees (default: the caller's)."""
    env = {
        "PATH": path or os.environ.get("PATH", "/usr/bin:/bin"),
        "KV_FLEX_SOCKET": str(socket),
        "KV_FLEX_LOG": str(log),
    }
    command = list(executable or shim_command())
    started = time.perf_counter()
    proc = subprocess.run(
        [*command, *args], env=env, capture_output=True, timeout=timeout, check=False
    )
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    return check_output(proc, elapsed_ms)
