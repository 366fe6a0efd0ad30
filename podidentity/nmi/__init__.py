"""NMI, the node managed-identity endpoint (a hostNetwork DaemonSet).

Answers `/host/token/` for node components such as our volume driver, and pod traffic to
`169.254.169.254/metadata/identity/...` redirected to it by nat rules on the node. It finds the
calling pod from a watch-fed cache of this node's pods and its identities from
AzureAssignedIdentity (or bindings in managed mode), and hands out tokens cached per identity and
resource.

Dependency rule: HTTP handlers stay thin over one core; Kubernetes through `kube`, Azure through
`azcommon`; never `driver` or `podidentity.mic`.
"""
