"""`make demo-cluster` (`python -m devstack.demo --cluster`): the seed pod on a real cluster.

Brings up the local cluster, runs the node plugin as a host process registered with kubelet,
applies the seed `azure/kv` FlexVolume pod with kubectl, reads /kvmnt from inside the container
with kubectl exec, deletes the pod and takes everything down again.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from devstack.client import Devstack
from devstack.cluster import Cluster, ComponentError, missing
from devstack.cluster.images import APP_IMAGE_SHORT
from devstack.cluster.nodeplugin import NodePlugin, flex_env, install

TENANT = "11111111-1111-1111-1111-111111111111"
SEED_POD = f"""apiVersion: v1
kind: Pod
metadata:
  labels:
    app: nginx-flex-kv-podid
  name: nginx-flex-kv-podid
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: nginx-flex-kv-podid
    image: {APP_IMAGE_SHORT}
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumeMounts:
    - name: test
      mountPath: /kvmnt
      readOnly: true
  volumes:
  - name: test
    flexVolume:
      driver: "azure/kv"
      options:
        usepodidentity: "true"
        keyvaultname: "testkv"
        keyvaultobjectnames: "secret1;key1;cert1"
        keyvaultobjecttypes: secret;key;cert
        keyvaultobjectversions: ""
        resourcegroup: "rg"
        subscriptionid: "00000000-0000-0000-0000-000000000000"
        tenantid: "{TENANT}"
"""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def say(text: str = "") -> None:
    print(text, flush=True)


def main() -> int:
    reasons = missing()
    if reasons:
        say("demo --cluster cannot run here:\n  " + "\n  ".join(reasons))
        return 2
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="kv-demo-cluster-", dir="/tmp"))
    stack: Devstack | None = None
    cluster = Cluster(work / "cluster", kubelet_env=flex_env(work / "driver"))
    plugin: NodePlugin | None = None
    try:
        say("== 1. Devstack (Key Vault, Entra ID, NMI on 127.0.0.1, the default port 2579 if free)")
        free = _port_free(2579)
        stack = Devstack.start(work / "devstack", extra_args=["--nmi-port", "2579"] if free else [])
        seed = SEED_POD if free else SEED_POD + f'        nmiport: "{stack.nmi_port}"\n'
        say(f"   NMI on 127.0.0.1:{stack.nmi_port}")
        say("== 2. A real single-node Kubernetes: etcd, apiserver, scheduler, containerd, kubelet")
        cluster.up()
        say(f"   node {cluster.node_name} Ready after {cluster.bring_up_seconds:.1f}s")
        say(f"   KUBECONFIG={cluster.kubeconfig}")
        say("== 3. Node plugin on the host; shim in kubelet's volume-plugin dir; CSIDriver applied")
        install(cluster)
        plugin = NodePlugin(work / "driver", cluster, stack.cloud_config).start()
        say("   kubelet registered kv.csi.azure.com (CSINode)")
        say("== 4. kubectl apply -f seed-pod.yaml (nginx-flex-kv-podid, flexVolume azure/kv)")
        cluster.kubectl("apply", "-f", "-", input=seed)
        cluster.kubectl(
            "wait",
            "--for=condition=Ready",
            "pod/nginx-flex-kv-podid",
            "--timeout=240s",
            timeout=270,
        )
        say(cluster.kubectl("get", "pod", "nginx-flex-kv-podid", "-o", "wide").stdout.rstrip())
        say("== 5. kubectl exec nginx-flex-kv-podid -- ls -l /kvmnt; cat /kvmnt/secret1")
        ls = ["exec", "nginx-flex-kv-podid", "--", "ls", "-lL", "/kvmnt"]
        say(cluster.kubectl(*ls).stdout.rstrip())
        secret = cluster.kubectl(
            "exec", "nginx-flex-kv-podid", "--", "cat", "/kvmnt/secret1"
        ).stdout
        say(f"   /kvmnt/secret1: {secret}")
        head = ["exec", "nginx-flex-kv-podid", "--", "head", "-n", "1", "/kvmnt/cert1"]
        say(f"   /kvmnt/cert1 starts: {cluster.kubectl(*head).stdout.strip()}")
        say("== 6. kubectl delete pod: kubelet execs azure~kv/kv unmount")
        cluster.kubectl(
            "delete", "pod", "nginx-flex-kv-podid", "--wait=true", "--timeout=120s", timeout=150
        )
        say("   deleted")
        return 0
    except (ComponentError, RuntimeError) as exc:
        say(f"demo --cluster failed: {exc}")
        if plugin is not None:
            say(plugin.tail())
        return 1
    finally:
        if plugin is not None:
            plugin.stop()
        problems = cluster.down()
        if stack is not None:
            stack.stop()
        say(f"== 7. Cluster down: {'; '.join(problems) or 'nothing left behind'}")
        say(f"Demo finished in {time.monotonic() - started:.1f}s")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
