"""What kubelet hands a FlexVolume driver outside the devstack world: a realistic mount dir and
options map for the shim and bridge tests (a made-up vault and tenant; nothing is fetched)."""

from __future__ import annotations

import base64

UID = "6f1f3ad4-7d7c-4d1b-9a40-3c1c2b0f7e11"
MOUNT_DIR = f"/var/lib/kubelet/pods/{UID}/volumes/azure~kv/secrets"
CLIENT_SECRET = "s3cr3t-Value-that-must-not-leak"


def kubelet_options(**extra: str) -> dict[str, str]:
    """The options map kubelet passes to `mount`: the pod's options plus its own keys."""
    options = {
        "keyvaultname": "kv-demo",
        "keyvaultobjectnames": "user-name;password",
        "keyvaultobjecttypes": "secret;secret",
        "tenantid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "kubernetes.io/fsType": "",
        "kubernetes.io/pod.name": "nginx-flex-kv",
        "kubernetes.io/pod.namespace": "default",
        "kubernetes.io/pod.uid": UID,
        "kubernetes.io/pvOrVolumeName": "secrets",
        "kubernetes.io/readwrite": "rw",
        "kubernetes.io/serviceAccount.name": "default",
        "kubernetes.io/secret/clientid": base64.b64encode(b"client-id").decode(),
        "kubernetes.io/secret/clientsecret": base64.b64encode(CLIENT_SECRET.encode()).decode(),
    }
    options.update(extra)
    return options
