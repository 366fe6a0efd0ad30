"""Pod identity for Azure: our own NMI and MIC, and the aad-pod-identity CRD types they share.

- `podidentity.crds`: the `aadpodidentity.k8s.io/v1` resources (AzureIdentity,
  AzureIdentityBinding, AzureAssignedIdentity, AzurePodIdentityException) as typed values.
- `podidentity.nmi`: the node component that answers token requests for pods.
- `podidentity.mic`: the cluster component that assigns identities to pods and their VMs.

Dependency rule (checked by import-linter in `make lint`): pod identity may use `kube` (the
Kubernetes access layer) and `azcommon` (clouds, credentials, transport, retry, logging); it never
imports the node plugin (`driver`), and the node plugin never imports it: the two meet only on the
wire (NMI's `/host/token/`).
"""
