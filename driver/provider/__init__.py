"""The secrets-store provider front door: our own `v1alpha1.CSIDriverProvider` gRPC server, so a
cluster running the upstream secrets-store CSI driver can use this driver in place of
provider-azure (`mount.py` the use-case, `server.py` the servicer, `proto/` generated code)."""
