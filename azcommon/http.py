"""HTTP sessions: connections are reused across requests, volumes and identities.

Two kinds, because traffic goes two ways: to Azure (Key Vault, Entra ID), which in an enterprise
network leaves through an HTTPS proxy, and to the node itself (NMI on 127.0.0.1, IMDS on
169.254.169.254), which must never be sent to one. Proxy settings are handed in (the caller reads
the environment once); sessions never read the environment themselves, so a stray variable
cannot redirect node-local traffic, and no `.netrc` can replace a bearer token.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter


@dataclass(frozen=True)
class ProxyConfig:
    """An HTTP proxy for Azure traffic (`HTTPS_PROXY`) and the hosts that bypass it (`NO_PROXY`:
    comma-separated host names, `.domain` suffixes, IP addresses or CIDR ranges, each with an
    optional `:port`; `*` for every host)."""

    url: str = field(default="", repr=False)  # may carry proxy credentials
    no_proxy: str = ""

    def for_url(self, url: str) -> dict[str, str]:
        """The `proxies` mapping for one request: empty when it goes direct."""
        if not self.url or self.bypasses(url):
            return {}
        return {"http": self.url, "https": self.url}

    def bypasses(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        for entry in (e.strip().lower() for e in self.no_proxy.split(",")):
            if not entry:
                continue
            if entry == "*":
                return True
            name, want_port = _split_port(entry)
            if want_port is not None and want_port != port:
                continue
            if _host_matches(host, name):
                return True
        return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        close = entry.find("]")
        rest = entry[close + 1 :]
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        return entry[1:close], port
    if entry.count(":") == 1:
        name, _, digits = entry.partition(":")
        return name, int(digits) if digits.isdigit() else None
    return entry, None


def _host_matches(host: str, entry: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        try:
            return address in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    suffix = entry.lstrip(".")
    return host == suffix or host.endswith("." + suffix)


class _ProxyingAdapter(HTTPAdapter):
    """Chooses the proxy per request from the configuration it was given, never from the
    environment."""

    def __init__(self, proxy: ProxyConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._proxy = proxy

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        chosen = self._proxy.for_url(request.url or "")
        return super().send(request, stream, timeout, verify, cert, chosen)


def make_session(
    ca_bundle: str = "", pool_size: int = 64, proxy: ProxyConfig | None = None
) -> requests.Session:
    """A pooled session that trusts the system store plus `ca_bundle` when given. With `proxy`,
    requests go through it unless `no_proxy` names their host; without, they always go direct."""
    session = requests.Session()
    options: dict[str, Any] = {"pool_connections": 32, "pool_maxsize": pool_size, "max_retries": 0}
    adapter = _ProxyingAdapter(proxy, **options) if proxy else HTTPAdapter(**options)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if ca_bundle:
        session.verify = ca_bundle
    # Proxies from the environment would send NMI/IMDS traffic (127.0.0.1, 169.254.169.254) away.
    session.trust_env = False
    return session


def make_transport(
    session: requests.Session, timeout: float, ca_bundle: str = ""
) -> RequestsTransport:
    """An azure-core transport over the shared session; the session outlives every client."""
    # azure-core passes `verify` on every request, overriding the session's own setting, so the
    # trust must be given to the transport itself.
    verify: str | bool = ca_bundle or (session.verify if isinstance(session.verify, str) else True)
    return RequestsTransport(
        session=session,
        session_owner=False,
        connection_verify=verify,
        connection_timeout=timeout,
        read_timeout=timeout,
    )
