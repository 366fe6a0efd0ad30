"""A world for MIC's tests and benchmarks: the API server alone (etcd + kube-apiserver) with the
CRDs and Node objects whose providerIDs name the devstack's VMs and scale sets, the devstack's
Resource Manager, and MIC replicas run in-process (each with its own Lease identity)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client
from lightkube.config.kubeconfig import SingleConfig
from lightkube.types import PatchType

from devstack.client import Devstack
from devstack.cluster.apiserver import ApiServer
from kube.client import load_config, make_client
from kube.lease import LeaseTimings
from kube.resources import Node, Pod
from podidentity.crds import ASSIGNED_FINALIZER, BINDING_LABEL, AssignedState, AzureAssignedIdentity
from podidentity.crds.resources import (
    AzureAssignedIdentityResource,
    AzureIdentityBindingResource,
    AzureIdentityResource,
    AzurePodIdentityExceptionResource,
    crd_manifest,
)
from podidentity.mic.app import Mic
from podidentity.mic.settings import MicSettings

RG = "mic-nodes"


def arm_seed(vms: int = 2, scale_sets: int = 1, instances: int = 2, identities: int = 5) -> str:
    """A devstack seed: `vm-<i>` (node `vm-<i>`), `ss-<j>` (nodes `ss-<j>-<k>`), identities
    `id-<n>` that MIC may assign, `id-refused` it may not, an SP identity `sp-id`."""
    lines = [
        "tenant_id: 77777777-7777-7777-7777-777777777777",
        "admin: boss",
        "identities:",
        "  boss: {kind: service-principal, client_id: d0000000-0000-0000-0000-000000000001,"
        " client_secret: boss-secret}",
        "  mic: {kind: service-principal, client_id: d0000000-0000-0000-0000-000000000002,"
        " client_secret: mic-secret}",
        "  sp-id: {kind: service-principal, client_id: d0000000-0000-0000-0000-000000000003,"
        " client_secret: sp-secret}",
        "  id-refused: {kind: user-assigned, client_id: d0000000-0000-0000-0000-0000000000ff}",
        "  preexisting: {kind: user-assigned, client_id: d0000000-0000-0000-0000-0000000000fe}",
        "  node-system: {kind: system-assigned, client_id: d0000000-0000-0000-0000-0000000000fd}",
    ]
    for n in range(identities):
        lines.append(
            f"  id-{n}: {{kind: user-assigned, client_id: e0000000-0000-0000-0000-{n:012d}}}"
        )
    allowed = ", ".join([f"id-{n}" for n in range(identities)] + ["preexisting"])
    lines += [
        "vaults:",
        "  mickv:",
        "    access_policies:",
        "      id-0: {secrets: [get]}",
        "    secrets:",
        "      micsecret: {value: mic-secret-value}",
        "arm:",
        "  subscription_id: 88888888-8888-8888-8888-888888888888",
        f"  resource_group: {RG}",
        "  default_node: null",
        "  operators:",
        f"    mic: [{allowed}]",
        "  virtual_machines:",
    ]
    for i in range(vms):
        extra = " system_identity: node-system, identities: [preexisting]" if i == 0 else ""
        lines.append(f"    vm-{i}: {{node: vm-{i},{extra}}}".replace(",}", "}"))
    lines.append("  scale_sets:")
    for j in range(scale_sets):
        nodes = ", ".join(f'"{k}": ss-{j}-{k}' for k in range(instances))
        lines.append(f"    ss-{j}: {{instances: {{{nodes}}}}}")
    return "\n".join(lines) + "\n"


def start_devstack(directory: Path, **kw: int) -> Devstack:
    directory.mkdir(parents=True, exist_ok=True)
    seed = directory / "seed.yaml"
    seed.write_text(arm_seed(**kw))
    return Devstack.start(directory / "state", seed=seed)


def mic_credential(ds: Devstack) -> Any:
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        ds.tenant_id, ds.client_id("mic"), ds.client_secret("mic"),
        authority=ds.authority_host, connection_verify=ds.ca_bundle,
        disable_instance_discovery=True,
    )  # fmt: skip


def install(api: ApiServer) -> None:
    """The CRDs (idempotent)."""
    api.kubectl("apply", "--server-side", "-f", "-", input=crd_manifest())
    for kind in ("azureidentities", "azureidentitybindings", "azureassignedidentities",
                 "azurepodidentityexceptions"):  # fmt: skip
        api.kubectl("wait", "--for=condition=Established", f"crd/{kind}.aadpodidentity.k8s.io")


def register_nodes(client: Client, ds: Devstack) -> list[str]:
    """A Node object per devstack node, with the providerID Azure gives it."""
    names = sorted(ds.arm["nodes"])
    for name in names:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                "spec": {"providerID": ds.provider_id(name)}}  # fmt: skip
        try:
            client.create(Node(body))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
    return names


def eventually(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(0.05)


@dataclass
class Replica:
    mic: Mic
    thread: threading.Thread

    def kill(self) -> None:
        """Stop at once without releasing the lease (as a crash would)."""
        self.mic.stop()
        self.mic.elector.stop(release=False)
        self.thread.join(30)
        for cache in self.mic.caches_list:
            cache.stop(interrupt=False)
        self.mic.reconciler.close()

    def close(self) -> None:
        self.mic.close()
        self.thread.join(30)


FAST_LEASE = LeaseTimings(duration=8.0, renew_deadline=6.0, retry=1.0)


@dataclass
class MicWorld:
    api: ApiServer
    ds: Devstack
    config: SingleConfig
    client: Client
    replicas: list[Replica] = field(default_factory=list)
    lease_name: str = "mic"
    namespaces: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, api: ApiServer, ds: Devstack, lease_name: str = "mic") -> MicWorld:
        install(api)
        config = load_config(api.kubeconfig)
        client = make_client(config, timeout=60.0)  # the machine may be busy: be patient
        register_nodes(client, ds)
        return cls(api, ds, config, client, lease_name=lease_name)

    def start_mic(self, name: str = "mic-0", wait_leader: bool = True, **settings: Any) -> Mic:
        base: dict[str, Any] = {
            "leader_election_namespace": "default",
            "leader_election_name": self.lease_name,
            "leader_election_instance": name,
            "probe_addr": "",
        }
        base.update(settings)
        mic = Mic(
            MicSettings(**base), self.config, mic_credential(self.ds), self.ds.arm_endpoint,
            ca_bundle=self.ds.ca_bundle, lease_timings=FAST_LEASE,
        )  # fmt: skip
        thread = threading.Thread(target=mic.run, name=f"run-{name}", daemon=True)
        thread.start()
        self.replicas.append(Replica(mic, thread))
        if wait_leader:
            eventually(mic.active.is_set, 60, "leadership")
        return mic

    def replica(self, mic: Mic) -> Replica:
        return next(r for r in self.replicas if r.mic is mic)

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()
        self.replicas = []

    # -- objects --------------------------------------------------------------------------------

    def namespace(self, name: str) -> str:
        """Create (or reuse) a namespace; `cleanup()` empties the ones made here."""
        self.api.kubectl("create", "namespace", name, check=False)
        self.namespaces.append(name)
        return name

    def identity(self, ns: str, name: str, identity: str, *, type: int = 0,
                 resource_id: str | None = None, annotations: dict[str, str] | None = None) -> None:  # fmt: skip
        spec: dict[str, Any] = {"type": type, "clientID": self.ds.client_id(identity)}
        if type == 0:
            spec["resourceID"] = (
                resource_id if resource_id is not None else self.ds.resource_id(identity)
            )
        else:
            spec["tenantID"] = self.ds.tenant_id
            spec["clientPassword"] = {"name": f"{name}-secret", "namespace": ns}
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if annotations:
            meta["annotations"] = annotations
        self.client.create(AzureIdentityResource({
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
            "metadata": meta, "spec": spec,
        }))  # fmt: skip

    def binding(self, ns: str, name: str, identity: str, selector: str) -> None:
        self.client.create(AzureIdentityBindingResource({
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentityBinding",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"azureIdentity": identity, "selector": selector},
        }))  # fmt: skip

    def exception(self, ns: str, name: str, labels: dict[str, str]) -> None:
        self.client.create(AzurePodIdentityExceptionResource({
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzurePodIdentityException",
            "metadata": {"name": name, "namespace": ns}, "spec": {"podLabels": labels},
        }))  # fmt: skip

    def pod(self, ns: str, name: str, node: str, selector: str | None,
            labels: dict[str, str] | None = None) -> str:  # fmt: skip
        all_labels = dict(labels or {})
        if selector is not None:
            all_labels[BINDING_LABEL] = selector
        created = self.client.create(Pod({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": all_labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        }))  # fmt: skip
        return str(created["metadata"]["uid"])

    def delete_pod(self, ns: str, name: str) -> None:
        self.client.delete(Pod, name, namespace=ns, grace_period=0)

    def relabel(self, ns: str, name: str, selector: str) -> None:
        self.client.patch(Pod, name, {"metadata": {"labels": {BINDING_LABEL: selector}}},
                          namespace=ns, patch_type=PatchType.MERGE)  # fmt: skip

    def assigned(self, ns: str | None = None) -> list[AzureAssignedIdentity]:
        kwargs: dict[str, Any] = {"namespace": ns if ns is not None else "*"}
        return [AzureAssignedIdentity.parse(o)
                for o in self.client.list(AzureAssignedIdentityResource, **kwargs)]  # fmt: skip

    def states(self, ns: str) -> dict[tuple[str, str], str]:
        """(pod, identity name) -> status of every AzureAssignedIdentity in `ns`."""
        return {(a.pod, a.identity.meta.name): a.state.value for a in self.assigned(ns)}

    def attached(self, resource: str) -> set[str]:
        return set(self.ds.attached(resource))

    def events(self, ns: str, name: str) -> list[tuple[str, str]]:
        from lightkube.resources.core_v1 import Event

        return [(e.reason or "", e.message or "")
                for e in self.client.list(Event, namespace=ns,
                                          fields={"involvedObject.name": name})]  # fmt: skip

    def cleanup(self, namespaces: Iterable[str] | None = None) -> None:
        """Delete what the tests made in `namespaces` (default: those made through
        `namespace()`); no namespace controller runs on an API server alone."""
        for ns in self.namespaces if namespaces is None else namespaces:
            for res in (Pod, AzureIdentityBindingResource, AzureIdentityResource,
                        AzurePodIdentityExceptionResource):  # fmt: skip
                for obj in list(self.client.list(res, namespace=ns)):
                    with contextlib.suppress(ApiError):
                        self.client.delete(res, obj["metadata"]["name"], namespace=ns,
                                           grace_period=0)  # fmt: skip
            for aai in list(self.client.list(AzureAssignedIdentityResource, namespace=ns)):
                name = aai["metadata"]["name"]
                try:
                    self.client.patch(AzureAssignedIdentityResource, name,
                                      {"metadata": {"finalizers": None}}, namespace=ns,
                                      patch_type=PatchType.MERGE)  # fmt: skip
                    self.client.delete(AzureAssignedIdentityResource, name, namespace=ns)
                except ApiError:
                    pass


__all__ = ["ASSIGNED_FINALIZER", "AssignedState", "MicWorld", "eventually", "start_devstack"]
