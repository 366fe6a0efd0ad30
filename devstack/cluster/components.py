"""Command lines and configuration files of the cluster's components.

Every path is under the cluster's state dir and every port is on 127.0.0.1. The choices that
these machines need (measured, see ../shared/k8s/README.md) are commented where they are made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from devstack.cluster.binaries import Binaries
from devstack.cluster.host import cluster_id
from devstack.cluster.images import PAUSE_IMAGE
from devstack.cluster.pki import Pki

SERVICE_CIDR = "10.96.0.0/24"
CNI_NETWORK = "kv-cluster"
SA_ISSUER_DEFAULT = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Layout:
    """Where everything lives under the state dir, and the ports in use."""

    root: Path
    node_name: str
    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    controller_manager_port: int
    scheduler_port: int
    kubelet_port: int
    kubelet_healthz_port: int

    # Named after the state dir, so clusters running at the same time keep apart.
    @property
    def bridge(self) -> str:
        return f"kvbr{cluster_id(self.root)}"

    @property
    def pod_cidr(self) -> str:
        return f"10.88.{int(cluster_id(self.root)[:2], 16)}.0/24"

    @property
    def cgroup_root(self) -> str:
        return f"/kv-{cluster_id(self.root)}"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    # kubelet's root, its FlexVolume dir and the driver's run dir are at the paths deploy/'s
    # manifests use, so the DaemonSets run unchanged; each is a bind mount of a directory in
    # the state dir (host.HOST_BINDS), so the data stays under the state dir.
    @property
    def kubelet_root(self) -> Path:
        return Path("/var/lib/kubelet")

    @property
    def volume_plugin_dir(self) -> Path:
        return Path("/etc/kubernetes/volumeplugins")

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"


def etcd(b: Binaries, lay: Layout) -> list[str]:
    client = f"http://127.0.0.1:{lay.etcd_client_port}"
    peer = f"http://127.0.0.1:{lay.etcd_peer_port}"
    return [
        str(b.etcd),
        "--name=kv-cluster",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=kv-cluster={peer}",
        "--initial-cluster-state=new",
        # Tests churn little data; a small quota and no fsync-heavy snapshots keep it light.
        "--snapshot-count=10000",
        "--quota-backend-bytes=536870912",
        "--log-level=warn",
    ]


def apiserver(b: Binaries, lay: Layout, pki: Pki, sa_issuer: str) -> list[str]:
    serving = pki.issue(
        "apiserver",
        "kube-apiserver",
        server_names=("127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "10.96.0.1"),
        client=False,
    )
    kubelet_client = pki.issue(
        "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
    )
    return [
        str(b.apiserver),
        f"--etcd-servers=http://127.0.0.1:{lay.etcd_client_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={lay.apiserver_port}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={sa_issuer}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--kubelet-client-certificate={kubelet_client.cert}",
        f"--kubelet-client-key={kubelet_client.key}",
        # The API server reaches kubelet by node name, which resolves to loopback here.
        "--kubelet-preferred-address-types=Hostname",
        # Endpoints may not hold loopback addresses: no reconciler for the kubernetes Service.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--enable-admission-plugins=NodeRestriction",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager(b: Binaries, lay: Layout, pki: Pki) -> list[str]:
    pair = pki.issue("controller-manager", "system:kube-controller-manager")
    kubeconfig = pki.kubeconfig(
        lay.root / "controller-manager.kubeconfig", lay.server, "controller-manager", pair
    )
    return [
        str(b.controller_manager),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={lay.controller_manager_port}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca.cert}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        f"--cert-dir={lay.root / 'controller-manager-certs'}",
        "--v=1",
    ]


def scheduler(b: Binaries, lay: Layout, pki: Pki) -> list[str]:
    pair = pki.issue("scheduler", "system:kube-scheduler")
    kubeconfig = pki.kubeconfig(lay.root / "scheduler.kubeconfig", lay.server, "scheduler", pair)
    return [
        str(b.scheduler),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={lay.scheduler_port}",
        "--leader-elect=false",
        f"--cert-dir={lay.root / 'scheduler-certs'}",
        "--v=1",
    ]


def containerd(b: Binaries, lay: Layout) -> list[str]:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config = f"""version = 2
root = "{lay.containerd_root}"
state = "{lay.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{lay.containerd_socket}"

[ttrpc]
  address = "{lay.containerd_socket}.ttrpc"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: without this runc fails every sandbox on oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{b.runc}"
        Root = "{lay.root / "containerd" / "runc"}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{b.cni_dir}"
    conf_dir = "{lay.cni_conf_dir}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{lay.root / "containerd" / "opt"}"
"""
    path = lay.root / "containerd" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config)
    cni = {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": lay.bridge,
                # A gateway address on the bridge: pods can reach the node, so node-level
                # interception of pod traffic can be tested. No masquerade: pods reach nothing
                # beyond this node.
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": lay.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(lay.root / "cni" / "ipam"),
                },
            }
        ],
    }
    lay.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (lay.cni_conf_dir / "10-kv-cluster.conflist").write_text(json.dumps(cni, indent=2))
    return [str(b.containerd), "--config", str(path), "--log-level", "warn"]


def kubelet(b: Binaries, lay: Layout, pki: Pki) -> list[str]:
    node = lay.node_name
    client = pki.issue("kubelet-client", f"system:node:{node}", "system:nodes")
    kubeconfig = pki.kubeconfig(lay.root / "kubelet.kubeconfig", lay.server, "kubelet", client)
    serving = pki.issue(
        "kubelet-serving", f"system:node:{node}", "system:nodes",
        server_names=(node, "localhost", "127.0.0.1"), client=False,
    )  # fmt: skip
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": lay.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": lay.kubelet_healthz_port,
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        # cgroup v1 with the cgroupfs driver (no systemd here), under a root of this cluster's
        # own: kubelet kills processes in pod cgroups it does not know.
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": lay.cgroup_root,
        "failSwapOn": False,
        # No iptables chains of kubelet's own: nothing to undo on teardown.
        "makeIPTablesUtilChains": False,
        "volumePluginDir": str(lay.volume_plugin_dir),
        # Images are imported, never pulled: never garbage-collect them, never evict on disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "runtimeRequestTimeout": "4m",
        "registerNode": True,
    }
    config_path = lay.root / "kubelet-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    lay.volume_plugin_dir.mkdir(parents=True, exist_ok=True)
    return [
        str(b.kubelet),
        f"--config={config_path}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={lay.kubelet_root}",
        f"--cert-dir={lay.root / 'kubelet-certs'}",
        f"--hostname-override={node}",
        "--container-runtime=remote",
        f"--container-runtime-endpoint=unix://{lay.containerd_socket}",
        # The sandbox image is local: kubelet must not try to pull its default one.
        f"--pod-infra-container-image={PAUSE_IMAGE}",
        "--v=2",
    ]
