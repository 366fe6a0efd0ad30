"""One HTTP session per daemon: connections are reused across requests, volumes and identities."""

from __future__ import annotations

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter


def make_session(ca_bundle: str = "", pool_size: int = 64) -> requests.Session:
    """A pooled session that trusts the system store plus `ca_bundle` when given."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=32, pool_maxsize=pool_size, max_retries=0)
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
