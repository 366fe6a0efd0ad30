"""Builds NMI's parts from its settings and runs them (used by `__main__` and the tests)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import requests
from lightkube.config.kubeconfig import SingleConfig
from prometheus_client import start_http_server

from azcommon.http import make_session
from kube.client import load_config, make_client
from podidentity.nmi.config import Settings
from podidentity.nmi.core import NmiCore
from podidentity.nmi.http import NmiServer, ProbeServer
from podidentity.nmi.identities import IdentitySource
from podidentity.nmi.iptables import NatRules
from podidentity.nmi.pods import PodDirectory
from podidentity.nmi.tokens import TokenCache, TokenFetcher

log = logging.getLogger(__name__)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


@dataclass
class Nmi:
    """The running NMI: caches, core, servers and (optionally) the nat rules."""

    settings: Settings
    config: SingleConfig
    pods: PodDirectory
    identities: IdentitySource
    fetcher: TokenFetcher
    tokens: TokenCache
    core: NmiCore
    server: NmiServer
    session: requests.Session
    nat: NatRules | None = None
    probe: ProbeServer | None = None
    metrics: WSGIServer | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def active(self) -> bool:
        synced = self.pods.cache.synced and all(c.synced for c in self.identities.caches)
        return synced and (self.nat is None or self.nat.installed.is_set())

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.nat is not None:
            try:
                self.nat.remove()
            except Exception:
                log.exception("removing the nat rules failed")
        self.server.shutdown()
        self.server.server_close()
        for extra in (self.probe, self.metrics):
            if extra is not None:
                extra.shutdown()
                extra.server_close()
        self.pods.stop()
        self.identities.stop()


def build(
    settings: Settings, config: SingleConfig | None = None, sync_timeout: float = 60.0
) -> Nmi:
    """Start everything; returns once the caches are synced and the servers listen."""
    config = config or load_config(settings.kubeconfig)
    session = make_session(settings.ca_bundle)
    pods = PodDirectory(config, settings.node).start()
    identities = IdentitySource(
        config, settings.node, mode=settings.operation_mode, cluster_wide=settings.cluster_wide
    ).start()
    fetcher = TokenFetcher(
        imds_endpoint=settings.imds_endpoint, authority_host=settings.authority_host,
        ca_bundle=settings.ca_bundle, request_timeout=settings.request_timeout,
        deadline=settings.token_deadline, secrets=make_client(config), session=session,
    )  # fmt: skip
    tokens = TokenCache(fetcher.fetch, enabled=settings.token_cache, margin=settings.refresh_margin)
    core = NmiCore(
        pods, identities, tokens,
        assignment_wait=settings.assignment_wait, retry_after=settings.retry_after,
    )  # fmt: skip
    if not (pods.cache.wait_synced(sync_timeout) and identities.wait_synced(sync_timeout)):
        pods.stop()
        identities.stop()
        raise RuntimeError(f"the API caches did not sync within {sync_timeout:.0f}s")
    server = NmiServer(
        (settings.listen_address, settings.port), core,
        imds_endpoint=settings.imds_endpoint, session=session,
        metadata_header_required=settings.metadata_header_required,
        block_instance_metadata=settings.block_instance_metadata,
        request_timeout=settings.request_timeout,
    )  # fmt: skip
    server.serve_in_thread()
    nmi = Nmi(settings, config, pods, identities, fetcher, tokens, core, server, session)
    if settings.iptables:
        nmi.nat = NatRules(
            chain=settings.iptables_chain, metadata_ip=settings.metadata_ip,
            metadata_port=settings.metadata_port, target=settings.nat_target, port=nmi.port,
        ).start(settings.iptables_interval)  # fmt: skip
    if settings.probe_address:
        nmi.probe = ProbeServer(_hostport(settings.probe_address), nmi.active)
        threading.Thread(target=nmi.probe.serve_forever, name="probe", daemon=True).start()
    if settings.metrics_address:
        host, port = _hostport(settings.metrics_address)
        nmi.metrics, _ = start_http_server(port, host)
    log.info(
        "NMI serving on %s:%d for node %s (%s mode, %s matching, token cache %s)",
        settings.listen_address, nmi.port, settings.node, settings.operation_mode,
        "cluster-wide" if settings.cluster_wide else "namespaced",
        "on" if settings.token_cache else "off",
    )  # fmt: skip
    return nmi
