"""MIC, the managed identity controller (a Deployment with one leader elected on a Lease).

Reconciles level-triggered: from pods, nodes, AzureIdentity and AzureIdentityBinding it computes
the AzureAssignedIdentity objects and the VM / scale-set identity assignments that should exist,
diffs them with what exists, and acts only on the difference (Kubernetes writes through `kube`,
Azure Resource Manager through `azcommon`).

Dependency rule: never imports `driver` or `podidentity.nmi`.
"""
