"""The nat rules that send pods' IMDS traffic to NMI, reconciled periodically, removed on exit.

    -t nat -N aad-metadata
    -t nat -I PREROUTING 1 -j aad-metadata
    -A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80
       -j DNAT --to-destination <target>:<port>
    -A aad-metadata -j RETURN

PREROUTING only sees traffic arriving from other interfaces (pods); the node's own processes
(NMI itself, host-network pods) go through OUTPUT and reach IMDS directly, which is why
host-network pods cannot be given a pod identity. `reconcile()` compares the chain with the
expected rules and rewrites it when they differ (someone flushed it, a restart changed the
port); the jump is kept at position 1 of PREROUTING.
"""

from __future__ import annotations

import logging
import subprocess
import threading

log = logging.getLogger(__name__)


class NatRules:
    """Owns one nat chain; `iptables` is the program to run (iptables-legacy or -nft)."""

    def __init__(
        self,
        *,
        chain: str,
        metadata_ip: str,
        metadata_port: int,
        target: str,
        port: int,
        iptables: str = "iptables",
    ) -> None:
        self.chain = chain
        self.iptables = iptables
        self.expected = [
            f"-A {chain} ! -s 127.0.0.1/32 -d {metadata_ip}/32 -p tcp -m tcp --dport "
            f"{metadata_port} -j DNAT --to-destination {target}:{port}",
            f"-A {chain} -j RETURN",
        ]
        self.installed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                [self.iptables, "-w", "5", "-t", "nat", *args],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        except FileNotFoundError:
            raise RuntimeError(
                f"the program {self.iptables!r} is not installed: NMI needs it for the nat rules "
                "that intercept pods' IMDS requests (or run with --iptables=false, and only "
                "/host/token/ is served to pods' node components)"
            ) from None
        if check and result.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
        return result

    def current(self) -> list[str]:
        result = self._run("-S", self.chain, check=False)
        if result.returncode != 0:
            return []
        return [line for line in result.stdout.splitlines() if line.startswith("-A ")]

    def reconcile(self) -> bool:
        """Make the rules what they should be; True when something had to change."""
        changed = False
        if self._run("-S", self.chain, check=False).returncode != 0:
            self._run("-N", self.chain)
            changed = True
        if self.current() != self.expected:
            self._run("-F", self.chain)
            for rule in self.expected:
                self._run(*rule.split())
            changed = True
        jumps = self._run("-S", "PREROUTING").stdout.splitlines()
        jump = f"-A PREROUTING -j {self.chain}"
        rules = [line for line in jumps if line.startswith("-A PREROUTING")]
        if not rules or rules[0] != jump:
            while self._run("-D", "PREROUTING", "-j", self.chain, check=False).returncode == 0:
                pass
            self._run("-I", "PREROUTING", "1", "-j", self.chain)
            changed = True
        if changed:
            log.info("nat rules for IMDS interception installed (chain %s)", self.chain)
        self.installed.set()
        return changed

    def start(self, interval: float) -> NatRules:
        self.reconcile()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="nat-rules", daemon=True
        )
        self._thread.start()
        return self

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.reconcile()
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                log.warning("reconciling the nat rules failed: %s", exc)

    def remove(self) -> None:
        """Delete the jump and the chain (on shutdown): pods then reach IMDS directly again."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        while self._run("-D", "PREROUTING", "-j", self.chain, check=False).returncode == 0:
            pass
        self._run("-F", self.chain, check=False)
        self._run("-X", self.chain, check=False)
        self.installed.clear()
        log.info("nat rules for IMDS interception removed (chain %s)", self.chain)
