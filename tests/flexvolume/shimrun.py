"""Runs the azure~kv/kv shim the way kubelet does and checks the output contract every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "flexvolume" / "azure~kv" / "kv"
INSTALLER = REPO / "flexvolume" / "install.sh"


@dataclass(frozen=True)
class ShimResult:
    reply: dict[str, object]
    returncode: int

    @property
    def status(self) -> object:
        return self.reply.get("status")

    @property
    def message(self) -> str:
        message = self.reply.get("message", "")
        assert isinstance(message, str)
        return message


def parse_one_json_object(stdout: bytes) -> dict[str, object]:
    """kubelet's view: the whole output must be exactly one JSON object."""
    text = stdout.decode("utf-8")
    value, end = json.JSONDecoder().raw_decode(text.lstrip())
    assert text.lstrip()[end:].strip() == "", f"more than one JSON value on stdout: {text!r}"
    assert isinstance(value, dict), f"stdout is not a JSON object: {text!r}"
    return value


def check_output(proc: subprocess.CompletedProcess[bytes]) -> ShimResult:
    assert proc.stderr == b"", f"the shim wrote to stderr: {proc.stderr!r}"
    reply = parse_one_json_object(proc.stdout)
    assert reply.get("status") in ("Success", "Failure", "Not supported"), reply
    if reply["status"] != "Success":
        assert isinstance(reply.get("message"), str) and reply["message"], reply
    assert proc.returncode == (0 if reply["status"] == "Success" else 1), proc.returncode
    return ShimResult(reply, proc.returncode)


def run_shim(
    args: Sequence[str],
    *,
    socket: Path,
    log: Path | str,
    executable: Sequence[str] | None = None,
) -> ShimResult:
    """Exec the shim as kubelet would (`kv <call> ...`) and check the FlexVolume output contract."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "KV_FLEX_SOCKET": str(socket),
        "KV_FLEX_LOG": str(log),
    }
    command = list(executable or [sys.executable, "-I", "-S", str(SHIM)])
    proc = subprocess.run([*command, *args], env=env, capture_output=True, timeout=60, check=False)
    return check_output(proc)
