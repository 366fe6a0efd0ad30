"""Enterprise egress: Key Vault and Entra ID traffic goes through HTTPS_PROXY (an HTTP CONNECT
proxy run here on 127.0.0.1), NO_PROXY is honoured, and NMI / IMDS on the node never go
through the proxy."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from devstack.client import Devstack
from devstack.harness import world
from devstack.harness.attributes import csi_attributes
from tests.fixtures.daemon import StartDaemon


class ConnectProxy(socketserver.ThreadingTCPServer):
    """A minimal HTTP proxy: tunnels CONNECT, refuses everything else; records what it saw."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.seen: list[str] = []  # "CONNECT host:port" or "GET http://..."
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def targets(self) -> set[str]:
        with self.lock:
            return set(self.seen)


class _Tunnel(socketserver.BaseRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        with self.server.lock:
            self.server.seen.append(f"{method} {target}")
        if method != "CONNECT":
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pair = [self.request, upstream]
            while True:
                ready, _, _ = select.select(pair, [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.request else self.request).sendall(data)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def hostport(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def publish_both(daemon_start: StartDaemon, devstack: Devstack) -> None:
    """A pod-identity volume (NMI on the node) and a service-principal one (Entra ID)."""
    daemon = daemon_start()
    for identity in ("pod", "sp"):
        volume_id = f"proxy-{identity}-{uuid.uuid4().hex[:8]}"
        target = daemon.target(volume_id)
        if identity == "pod":
            attributes, secrets = daemon.pod_attributes(), None
        else:
            attributes = csi_attributes(devstack.nmi_port, extra={"usePodIdentity": None})
            secrets = {
                "clientid": devstack.client_id(world.SP_IDENTITY),
                "clientsecret": devstack.client_secret(world.SP_IDENTITY),
            }
        daemon.publish(volume_id, target, attributes, secrets=secrets)
        assert (target / world.SECRET).read_bytes() == world.SECRET_VALUE.encode()
        daemon.unpublish(volume_id, target)


def test_key_vault_and_entra_id_go_through_the_proxy_and_nmi_never_does(
    start_daemon: StartDaemon,
    devstack: Devstack,
    proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    publish_both(start_daemon, devstack)
    seen = proxy.targets()
    assert f"CONNECT {hostport(devstack.vault_url(world.VAULT))}" in seen
    assert f"CONNECT {hostport(devstack.authority_host)}" in seen
    nmi = f"127.0.0.1:{devstack.nmi_port}"
    assert not [s for s in seen if nmi in s or "/host/token" in s or "metadata" in s], seen


def test_no_proxy_hosts_go_direct(
    start_daemon: StartDaemon,
    devstack: Devstack,
    proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.0/8")
    publish_both(start_daemon, devstack)
    assert proxy.targets() == set()
