"""Our NMI on the real cluster: the seed flow end to end, interception of pods' IMDS traffic,
another pod's identity refused, host-network pods refused, and 503 + Retry-After while MIC (here:
the test, writing AzureAssignedIdentities as MIC would) has not assigned yet."""

from __future__ import annotations

import base64
import json
from typing import Any

from devstack.client import Devstack
from devstack.cluster import Cluster
from devstack.cluster.nmi import ClusterNmi, apply, assigned, binding, identity
from devstack.cluster.nodeplugin import NodePlugin
from tests.e2e import kube
from tests.e2e.test_volumes import seed_pod

VAULT = "https://vault.azure.net"
IMDS = "http://169.254.169.254/metadata/identity/oauth2/token"


def wget(cluster: Cluster, pod: str, url: str, metadata: bool = True) -> tuple[int, str]:
    """busybox wget from inside the pod: (exit status, stdout + the server's status lines)."""
    header = "--header 'Metadata: true' " if metadata else ""
    # (no -T: busybox 1.35 wget crashes with it)
    script = f"wget -S -q -O - {header}'{url}' 2>&1; echo \"rc=$?\""
    out = kube.exec_(cluster, pod, "sh", "-c", script)
    body, _, rc = out.rstrip().rpartition("rc=")
    return int(rc), body


def raw_get(cluster: Cluster, pod: str, path: str) -> str:
    """The whole HTTP answer (status line, headers, body) to a request for 169.254.169.254."""
    request = f"GET {path} HTTP/1.0\\r\\nHost: 169.254.169.254\\r\\nMetadata: true\\r\\n\\r\\n"
    return kube.exec_(cluster, pod, "sh", "-c", f"printf '{request}' | nc 169.254.169.254 80")


def claims(token_json: str) -> dict[str, Any]:
    start = token_json.index("{")
    token = json.loads(token_json[start : token_json.rindex("}") + 1])["access_token"]
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def app_pod(name: str, label: str | None, *, host_network: bool = False) -> dict[str, Any]:
    manifest = kube.pod(
        name, [], [], labels={"app": name, **({"aadpodidbinding": label} if label else {})}
    )
    manifest["spec"]["hostNetwork"] = host_network
    return manifest


def test_seed_flow_volume_and_application_get_the_pods_identity(
    cluster: Cluster, node_plugin: NodePlugin, e2e_devstack: Devstack, nmi: ClusterNmi,
    nmi_options: dict[str, str],
) -> None:  # fmt: skip
    # What users write: an AzureIdentity, a binding, a labelled pod with an azure/kv volume.
    ident = identity(e2e_devstack, "pod-identity")
    apply(cluster, ident, binding("pod-identity", "pod-identity"))
    pod = seed_pod(nmi_options)
    pod["metadata"]["name"] = "seed-app"
    pod["metadata"]["labels"]["aadpodidbinding"] = "pod-identity"
    pod["spec"]["containers"][0]["name"] = "seed-app"
    kube.apply(cluster, pod)
    uid = kube.wait_for(
        lambda: kube.get(cluster, "pod", "seed-app")["metadata"].get("uid"), 60, "the pod's uid"
    )
    # What MIC writes once the pod is scheduled; until then NMI answers 503 + Retry-After and
    # the driver (like the SDKs) retries.
    apply(cluster, assigned("seed-app", ident, cluster.node_name, pod_uid=uid))
    kube.wait_ready(cluster, "seed-app")
    assert kube.read(cluster, "seed-app", "/kvmnt/secret1") == "testkv-secret1-value"

    # The application asks IMDS as it would on Azure; NMI intercepts and answers for the pod.
    rc, out = wget(cluster, "seed-app", f"{IMDS}?api-version=2018-02-01&resource={VAULT}")
    assert rc == 0, out
    assert claims(out)["appid"] == e2e_devstack.client_id("pod-identity")
    kube.delete_pod(cluster, "seed-app")


def test_another_pods_identity_is_refused_and_unassigned_pods_get_503_retry_after(
    cluster: Cluster, e2e_devstack: Devstack, nmi: ClusterNmi
) -> None:
    ident = identity(e2e_devstack, "vm-user")
    apply(cluster, ident, binding("vm-user", "vm-user"))
    kube.apply(cluster, app_pod("owner", "vm-user"), app_pod("other", "someone-else"))
    kube.wait_ready(cluster, "owner")
    kube.wait_ready(cluster, "other")
    owner_uid = kube.get(cluster, "pod", "owner")["metadata"]["uid"]
    apply(cluster, assigned("owner", ident, cluster.node_name, pod_uid=owner_uid))
    vm_user = e2e_devstack.client_id("vm-user")
    url = f"{IMDS}?api-version=2018-02-01&resource={VAULT}&client_id={vm_user}"
    rc, out = kube.wait_for(lambda: (r := wget(cluster, "owner", url))[0] == 0 and r, 60, "token")
    assert claims(out)["appid"] == vm_user

    # The other pod names the owner's identity: not its own, so no token.
    rc, out = wget(cluster, "other", url)
    assert rc != 0 and ("503" in out or "404" in out or "403" in out), out
    assert "access_token" not in out
    # Its own identity is still being assigned (Created): 503 with Retry-After.
    other_uid = kube.get(cluster, "pod", "other")["metadata"]["uid"]
    apply(cluster, assigned("other", identity(e2e_devstack, "no-access"), cluster.node_name,
                            state="Created", pod_uid=other_uid))  # fmt: skip
    answer = raw_get(cluster, "other", f"/metadata/identity/oauth2/token?resource={VAULT}")
    lines = answer.replace("\r\n", "\n").split("\n")  # kubectl exec may have turned CRLF into LF
    assert lines[0] == "HTTP/1.1 503 Service Unavailable" and "Retry-After: 3" in lines, answer
    # Without the Metadata header, IMDS's own answer.
    rc, out = wget(cluster, "owner", url, metadata=False)
    assert rc != 0 and "400" in out
    kube.delete_pod(cluster, "owner")
    kube.delete_pod(cluster, "other")


def test_host_network_pods_get_no_pod_identity(
    cluster: Cluster, e2e_devstack: Devstack, nmi: ClusterNmi
) -> None:
    ident = identity(e2e_devstack, "vm-user")
    kube.apply(cluster, app_pod("hostnet", "vm-user", host_network=True))
    kube.wait_ready(cluster, "hostnet")
    uid = kube.get(cluster, "pod", "hostnet")["metadata"]["uid"]
    apply(cluster, assigned("hostnet", ident, cluster.node_name, pod_uid=uid))
    # Its traffic is the node's: not intercepted; asking NMI directly is refused.
    rc, out = wget(
        cluster, "hostnet",
        f"http://127.0.0.1:{nmi.port}/metadata/identity/oauth2/token?resource={VAULT}",
    )  # fmt: skip
    assert rc != 0 and ("403" in out or "404" in out), out
    assert "access_token" not in out
    kube.delete_pod(cluster, "hostnet")
