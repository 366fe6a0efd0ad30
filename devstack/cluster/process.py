"""Running one cluster component: a detached process with its own log, bounded waits, and
errors that name the component and show the tail of its log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class ComponentError(RuntimeError):
    """A component failed to start or to become ready; the message names it and its log tail."""


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_alive(pid: int, program: str) -> bool:
    """Whether `pid` is still the process we started (its argv[0] is `program`), not a reuse."""
    argv = _cmdline(pid)
    return bool(argv) and argv[0] == program


def stop_pid(pid: int, program: str, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only if `pid` still runs `program`."""
    if not pid_alive(pid, program):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid, program):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and pid_alive(pid, program):
        _reap(pid)
        time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class Component:
    """One cluster process. Started in its own session so it outlives `cluster up`."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.pid: int | None = None

    def start(self) -> Component:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(
                self.argv,
                stdin=devnull,
                stdout=out,
                stderr=out,
                env=self.env,
                start_new_session=True,
            )
        self.pid = proc.pid
        # The Popen object is dropped on purpose: `down` may run in another process, so the pid
        # (checked against argv[0]) is the handle. Reaping happens in stop_pid.
        proc.returncode = 0
        return self

    def running(self) -> bool:
        if self.pid is None:
            return False
        _reap(self.pid)
        return pid_alive(self.pid, self.argv[0])

    def fail(self, what: str) -> ComponentError:
        return ComponentError(
            f"{self.name}: {what}\n--- last lines of {self.log} ---\n{log_tail(self.log)}"
        )

    def wait(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll `check` until it is true; fail naming this component if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise self.fail(f"exited while waiting until {what}")
            try:
                if check():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise self.fail(f"not {what} after {timeout:.0f} s")
            time.sleep(0.25)

    def stop(self, grace: float = 10.0) -> None:
        if self.pid is not None:
            stop_pid(self.pid, self.argv[0], grace)
