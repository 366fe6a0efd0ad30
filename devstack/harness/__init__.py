"""The one test harness shared by `tests/` and `bench/` (dev-only).

- `world`: the seed world's names (tenant, vaults, pods, identities) and repository paths.
- `daemon`: a real `kv-csi-driver` process (`DaemonProcess`).
- `shim`: the azure/kv FlexVolume shim run as kubelet runs it (`run_shim`).
- `attributes`: CSI volume attributes and FlexVolume option maps (`csi_attributes`, ...).
- `csi_requests`: NodePublish/NodeUnpublish requests as kubelet sends them.
- `provider`: a client of the secrets-store provider API (`v1alpha1`), requests as the
  secrets-store CSI driver sends them, and a published volume's files for comparison.
- `node`: kubelet-shaped target paths, the mount mode, leftover mounts.
- `engine`: settings for an engine built in-process the way the daemon builds it.
- `mic`: MIC's world: API server + CRDs + Node objects for the devstack's VMs and scale sets,
  MIC replicas in-process (`MicWorld`), seeds with many VMs and identities (`arm_seed`).

Pytest fixtures over these live in `tests/fixtures/`; the benchmarks use them directly.
"""
