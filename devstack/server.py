"""Composition of the devstack: build the world from the seed, bind every server on loopback,
then describe the running stack in DIR/devstack.json and DIR/cloud.json."""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import crypto
from devstack.admin import AdminApp
from devstack.arm.app import ARM_RESOURCE, ArmApp
from devstack.entra import EntraApp, ImdsApp
from devstack.faults import Counters, FaultTable
from devstack.httpbase import App, DevServer, Request, Response, Route, kv_error, serve_in_thread
from devstack.keyvault import KEYVAULT_RESOURCE, KeyVaultApp
from devstack.nmi import NmiApp
from devstack.seed import Ports, load_seed
from devstack.tokens import TokenIssuer
from devstack.world import World

log = logging.getLogger("devstack")

STATE_FILE = "devstack.json"
CLOUD_FILE = "cloud.json"
DNS_SUFFIX = "vault.devstack.invalid"  # never resolves: an unknown vault cannot reach Azure


class _Starting:
    """Answers 503 while the servers are bound but not yet wired."""

    def classify(self, request: Request) -> Route:
        return Route(None, "starting", "admin")

    def handle(self, request: Request, route: Route) -> Response:
        return self.unavailable(route)

    def throttled(self, route: Route, retry_after: int) -> Response:
        return self.unavailable(route)

    def unavailable(self, route: Route) -> Response:
        return kv_error(503, "ServiceUnavailable", "The devstack is starting.")

    def internal_error(self, route: Route) -> Response:
        return self.unavailable(route)


@dataclass
class PortOverrides:
    authority: int | None = None
    imds: int | None = None
    nmi: int | None = None
    admin: int | None = None
    arm: int | None = None


class RunningStack:
    """Every server of one devstack, started; `stop()` shuts them down."""

    def __init__(
        self,
        state_dir: Path,
        seed: Path | None = None,
        host: str = "127.0.0.1",
        overrides: PortOverrides | None = None,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.host = host
        self.world, ports = load_seed(seed)
        self.ports = self._merge(ports, overrides or PortOverrides())
        self.faults = FaultTable()
        self.counters = Counters()
        self._stops: list[Callable[[], None]] = []
        self.state: dict[str, Any] = {}

    @staticmethod
    def _merge(ports: Ports, overrides: PortOverrides) -> Ports:
        return Ports(
            authority=overrides.authority if overrides.authority is not None else ports.authority,
            imds=overrides.imds if overrides.imds is not None else ports.imds,
            nmi=overrides.nmi if overrides.nmi is not None else ports.nmi,
            admin=overrides.admin if overrides.admin is not None else ports.admin,
            vaults=dict(ports.vaults),
            arm=overrides.arm if overrides.arm is not None else ports.arm,
        )

    def _server(self, name: str, port: int, tls: ssl.SSLContext | None) -> DevServer:
        return DevServer((self.host, port), _Starting(), self.faults, self.counters, tls, name)

    def start(self) -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        material = crypto.write_tls_material(self.state_dir)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(material.cert_file, material.key_file)

        authority = self._server("entra", self.ports.authority, tls)
        imds = self._server("imds", self.ports.imds, None)
        nmi = self._server("nmi", self.ports.nmi, None)
        admin = self._server("admin", self.ports.admin, None)
        arm = self._server("arm", self.ports.arm, tls)
        vault_servers = {
            name: self._server(f"vault-{name}", self.ports.vaults.get(name, 0), tls)
            for name in self.world.vaults
        }
        authority_host = f"https://{self.host}:{authority.port}"
        issuer = TokenIssuer(self.world, authority_host)
        for name, server in vault_servers.items():
            self.world.vaults[name].base_url = f"https://{self.host}:{server.port}"
            server.app = KeyVaultApp(self.world, issuer, name)
        authority.app = EntraApp(self.world, issuer)
        arm_app = ArmApp(self.world, issuer, self.world.compute)
        arm_app.base_url = f"https://{self.host}:{arm.port}"
        arm.app = arm_app
        imds.app = ImdsApp(self.world, issuer)
        nmi.app = NmiApp(self.world, issuer)
        admin.app = AdminApp(self.world, issuer, self.faults, self.counters, lambda: self.state)

        servers: list[DevServer] = [authority, imds, nmi, admin, arm, *vault_servers.values()]
        for server in servers:
            self._stops.append(serve_in_thread(server))
        # Pod-assignment delays count from here: the moment the stack can answer.
        self.world.started = time.monotonic()

        self.state = self._describe(material.ca_bundle, authority_host, imds, nmi, admin)
        self.state["arm"] = self._describe_arm(arm_app.base_url, imds)
        cloud = {
            "name": "DevStack",
            "authority_host": authority_host,
            "keyvault_resource": KEYVAULT_RESOURCE,
            "keyvault_dns_suffix": DNS_SUFFIX,
            "vault_urls": {name: v["url"] for name, v in self.state["vaults"].items()},
            "ca_bundle": str(material.ca_bundle),
            "imds_endpoint": self.state["imds_endpoint"],
        }
        _write_json(self.state_dir / CLOUD_FILE, cloud)
        _write_json(self.state_dir / STATE_FILE, self.state)
        return self.state

    def _describe(
        self,
        ca_bundle: Path,
        authority_host: str,
        imds: DevServer,
        nmi: DevServer,
        admin: DevServer,
    ) -> dict[str, Any]:
        world: World = self.world
        admin_identity = world.identity(world.admin)
        identities: dict[str, Any] = {}
        for name, identity in world.identities.items():
            entry: dict[str, Any] = {"client_id": identity.client_id, "kind": identity.kind}
            if identity.client_secret is not None:
                entry["client_secret"] = identity.client_secret
            if identity.resource_id:
                entry["resource_id"] = identity.resource_id
            if identity.principal_id:
                entry["principal_id"] = identity.principal_id
            identities[name] = entry
        return {
            "ca_bundle": str(ca_bundle),
            "tenant_id": world.tenant_id,
            "authority_host": authority_host,
            "imds_endpoint": f"http://{self.host}:{imds.port}/metadata/identity/oauth2/token",
            "imds_host": f"http://{self.host}:{imds.port}",
            "nmi_port": nmi.port,
            "admin_url": f"http://{self.host}:{admin.port}",
            "keyvault_resource": KEYVAULT_RESOURCE,
            "vaults": {name: {"url": v.base_url} for name, v in world.vaults.items()},
            "admin": {
                "identity": admin_identity.name,
                "client_id": admin_identity.client_id,
                "client_secret": admin_identity.client_secret,
            },
            "identities": identities,
            "pods": {
                key: {"identity": p.identity, "delay_seconds": p.delay_seconds}
                for key, p in world.pods.items()
            },
            "federations": [
                {
                    "identity": f.identity,
                    "namespace": f.namespace,
                    "service_account": f.service_account,
                    "audience": f.audience,
                }
                for f in world.federations()
            ],
            "cloud_config": str(self.state_dir / CLOUD_FILE),
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
        }

    def _describe_arm(self, endpoint: str, imds: DevServer) -> dict[str, Any]:
        """The `arm` entry of devstack.json: where ARM is, and every node's VM or scale set."""
        compute = self.world.compute
        nodes: dict[str, Any] = {}
        for resource in compute.describe():
            for node, provider_id in resource["nodes"].items():
                nodes[node] = {
                    "kind": resource["kind"],
                    "resource_id": resource["id"],
                    "resource_group": resource["resource_group"],
                    "name": resource["name"],
                    "provider_id": provider_id,
                    "imds_host": f"http://{self.host}:{imds.port}/nodes/{node}",
                }
        return {
            "endpoint": endpoint,
            "resource": ARM_RESOURCE,
            "subscription_id": compute.settings.subscription_id,
            "resource_group": compute.settings.resource_group,
            "location": compute.settings.location,
            "default_node": compute.settings.default_node,
            "nodes": nodes,
        }

    def stop(self) -> None:
        for stop in self._stops:
            stop()
        self._stops.clear()


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically, so a reader polling for the file never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def run_forever(stack: RunningStack, stop_event: threading.Event) -> None:
    state = stack.start()
    log.info(
        "devstack up: authority %s, vaults %s, nmi port %s, admin %s; state in %s",
        state["authority_host"],
        ", ".join(f"{n}={v['url']}" for n, v in state["vaults"].items()),
        state["nmi_port"],
        state["admin_url"],
        stack.state_dir,
    )
    try:
        stop_event.wait()
    finally:
        stack.stop()
        log.info("devstack stopped")


__all__ = ["App", "PortOverrides", "RunningStack", "run_forever"]
