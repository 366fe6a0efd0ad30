"""Volume attributes shared by the spec parser tests: the seed pod's FlexVolume options, the
keys kubelet adds, and one example per identity mode."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from devstack.harness.world import TENANT

CLIENT_SECRET = "Sup3r~Secret.Value_that-must-not-leak"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload-that-must-not-leak.sig"

CLIENT_ID = "22222222-2222-2222-2222-222222222222"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def without(attrs: Mapping[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in attrs.items() if k not in keys}


# What kubelet adds to FlexVolume options on its own.
FLEX_KUBELET = {
    "kubernetes.io/pod.name": "nginx-flex-kv-podid",
    "kubernetes.io/pod.namespace": "default",
    "kubernetes.io/pod.uid": "bb6b2e46-c80d-4c86-920c-8e08736fa211",
    "kubernetes.io/serviceAccount.name": "default",
    "kubernetes.io/readwrite": "ro",
    "kubernetes.io/fsType": "",
    "kubernetes.io/mounterArgs.FsGroup": "33",
    "kubernetes.io/pvOrVolumeName": "test",
}
# The seed pod's options from the issue (pod identity), plus kubelet's keys.
SEED = {
    "usepodidentity": "true",
    "keyvaultname": "testkv",
    "keyvaultobjectnames": "secret1;key1;cert1",
    "keyvaultobjecttypes": "secret;key;cert",
    "keyvaultobjectversions": "",
    "resourcegroup": "rg",
    "subscriptionid": "00000000-0000-0000-0000-000000000000",
    "tenantid": TENANT,
    **FLEX_KUBELET,
}
SP_FLEX = {
    **without(SEED, "usepodidentity"),
    "kubernetes.io/secret/clientid": b64(CLIENT_ID),
    "kubernetes.io/secret/clientsecret": b64(CLIENT_SECRET),
}
CSI_KUBELET = {
    "csi.storage.k8s.io/pod.name": "app-0",
    "csi.storage.k8s.io/pod.namespace": "apps",
    "csi.storage.k8s.io/pod.uid": "5f0c6f7e-0000-4000-8000-000000000001",
    "csi.storage.k8s.io/serviceAccount.name": "app",
    "csi.storage.k8s.io/ephemeral": "true",
}
TOKENS = (
    '{"api://AzureADTokenExchange": {"token": "' + SA_TOKEN + '", '
    '"expirationTimestamp": "2030-01-01T00:00:00Z"}}'
)
WORKLOAD = {
    "secretProviderClass": "app-kv",
    "providerName": "azure",
    "keyvaultName": "testkv",
    "tenantID": TENANT,
    "clientID": CLIENT_ID,
    "objects": "array:\n  - |\n    objectName: secret1\n    objectType: secret\n",
    **CSI_KUBELET,
    "csi.storage.k8s.io/serviceAccount.tokens": TOKENS,
}
PROVIDER_OBJECTS = """\
array:
  - |
    objectName: secret1
    objectType: secret
    objectVersion: ""
  - |
    objectName: key1
    objectType: key
    objectAlias: keys/key1.pem
    filePermission: "0600"
  - |
    objectName: cert1
    objectType: secret
    objectFormat: pfx
    objectEncoding: base64
    objectAlias: tls/cert1.pfx
    filePermission: 0640
  - objectName: db-password
    objectType: secret
    objectVersionHistory: "3"
  - {objectName: cert1, objectType: cert, objectAlias: tls/cert1.pem, objectVersion: 0123abc}
"""
VM_MI = {
    "usevmmanagedidentity": "true",
    "keyvaultname": "testkv",
    "keyvaultobjectnames": "secret1",
    "keyvaultobjecttypes": "secret",
    "tenantid": TENANT,
    **FLEX_KUBELET,
}
