"""Builds the parts from Settings. Called only by the composition root (`driver/__main__.py`)."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from lightkube.config.kubeconfig import SingleConfig

from azcommon.cloud import KNOWN_CLOUDS, Clouds, load_cloud_config
from azcommon.errors import InvalidArgument
from azcommon.http import ProxyConfig, make_session, make_transport
from driver.auth.provider import CredentialProvider
from driver.auth.vm_policy import VmIdentityPolicy
from driver.config import Settings
from driver.engine import Engine
from driver.files import AtomicWriter
from driver.keyvault.fetch import KeyVaultFetcher
from driver.ledger import Ledger
from driver.metrics import Metrics
from driver.mounts import make_mounter
from driver.placement import Placement
from driver.pods import ApiPods, KeptFilesEvents, KubeletOptions, NodePods, PodSource
from driver.provider.mount import ProviderMounts
from driver.resolve import Resolver
from driver.rotation import Rotator
from driver.upkeep import Upkeep
from driver.volumes import AuthStore, VolumeStore
from kube.client import load_config, make_client
from kube.events import EventRecorder


@dataclass
class Core:
    """The node plugin's parts, built once; the servers on top of them live in `daemon`."""

    settings: Settings
    metrics: Metrics
    ledger: Ledger
    resolver: Resolver
    placement: Placement
    engine: Engine
    upkeep: Upkeep
    rotator: Rotator
    provider: ProviderMounts
    credentials: CredentialProvider
    session: requests.Session
    azure_session: requests.Session
    executors: tuple[ThreadPoolExecutor, ...]
    pod_source: PodSource
    pods: NodePods | None = None
    events: EventRecorder | None = None

    def close(self) -> None:
        self.rotator.stop()
        if self.pods is not None:
            self.pods.stop()
        if self.events is not None:
            self.events.close()
        for executor in self.executors:
            executor.shutdown(wait=False, cancel_futures=True)
        self.credentials.close()
        self.session.close()
        self.azure_session.close()


def kube_config(settings: Settings) -> SingleConfig | None:
    """The API server's config: `--kubeconfig`, else in-cluster in a pod, else none."""
    if settings.kubeconfig is not None:
        return load_config(settings.kubeconfig)
    if settings.in_cluster:
        return load_config(None)
    return None


def pod_source(
    settings: Settings, config: SingleConfig | None, node_id: str
) -> tuple[PodSource, NodePods | None]:
    """Where FlexVolume pods' identities come from (see `driver.pods`)."""
    if settings.flexvolume_pod_source == "kubelet-options" or settings.flexvolume_socket is None:
        return KubeletOptions(), None
    if config is None:
        raise InvalidArgument(
            "--flexvolume-pod-source api needs the API server: run in a pod with a service"
            " account or pass --kubeconfig (or, only without an API server, choose"
            " --flexvolume-pod-source kubelet-options)"
        )
    if not node_id:
        raise InvalidArgument("--flexvolume-pod-source api needs --nodeid (this node's name)")
    pods = NodePods.for_node(config, node_id).start()
    return ApiPods(pods, settings.flexvolume_pod_wait), pods


def build_core(settings: Settings, metrics: Metrics | None = None) -> Core:
    metrics = metrics or Metrics()
    kube = kube_config(settings)
    node_id = settings.node_id or socket.gethostname()
    source, pods = pod_source(settings, kube, node_id)
    events = (
        EventRecorder(make_client(kube, field_manager="kv-driver"), "kv-driver", node_id)
        if kube is not None
        else None
    )
    cloud = (
        load_cloud_config(settings.cloud_config)
        if settings.cloud_config
        else KNOWN_CLOUDS["azurepubliccloud"]
    )
    pool_size = max(64, settings.fetch_concurrency * 2)
    session = make_session(cloud.ca_bundle, pool_size=pool_size)  # NMI, IMDS: never proxied
    proxy = ProxyConfig(settings.https_proxy, settings.no_proxy) if settings.https_proxy else None
    azure_session = make_session(cloud.ca_bundle, pool_size=pool_size, proxy=proxy)
    executor = ThreadPoolExecutor(
        max_workers=max(1, settings.fetch_concurrency), thread_name_prefix="kv-fetch"
    )
    fetcher = KeyVaultFetcher(
        make_transport(azure_session, settings.request_timeout),
        executor,
        metrics,
        deadline=settings.request_timeout * 3,
        rate_limit=settings.keyvault_rate_limit,
        rate_window=settings.keyvault_rate_window,
    )
    vm_policy = (
        VmIdentityPolicy.load(settings.vm_identity_policy)
        if settings.vm_identity_policy is not None
        else None
    )
    credentials = CredentialProvider(
        session,
        settings,
        on_token_request=metrics.token_request,
        vm_policy=vm_policy,
        azure_session=azure_session,
    )
    ledger = Ledger(VolumeStore(settings.state_dir), AuthStore(settings.state_dir), metrics)
    resolver = Resolver(Clouds(cloud), credentials, fetcher)
    placement = Placement(
        make_mounter(settings.mount_mode, settings.tmpfs_size),
        AtomicWriter(durable=settings.mount_mode == "dir"),
    )
    engine = Engine(
        resolver=resolver,
        placement=placement,
        ledger=ledger,
        metrics=metrics,
        poll_interval=settings.rotation_poll_interval,
        clock=time.time,
        on_kept=KeptFilesEvents(events) if events is not None else None,
    )
    upkeep = Upkeep(resolver=resolver, placement=placement, ledger=ledger, metrics=metrics)
    # Rotation checks run on their own pool so a long cycle never starves publishes.
    rotation_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kv-rotate")
    rotator = Rotator(
        ledger=ledger,
        resolver=resolver,
        upkeep=upkeep,
        metrics=metrics,
        executor=rotation_pool,
        interval=settings.rotation_poll_interval,
    )
    # The secrets-store provider front door shares the resolver (credentials, clients, gates);
    # identities only it used are released when idle and no published volume needs them.
    provider = ProviderMounts(
        resolver,
        metrics,
        fresh_for=settings.provider_fresh_for,
        in_use=ledger.identity_in_use,
    )
    return Core(
        settings,
        metrics,
        ledger,
        resolver,
        placement,
        engine,
        upkeep,
        rotator,
        provider,
        credentials,
        session,
        azure_session,
        (executor, rotation_pool),
        source,
        pods,
        events,
    )
