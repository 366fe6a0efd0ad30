"""The devstack's default world as the tests and benchmarks see it: one definition of each name.

These mirror `devstack/default_seed.yaml` (the seed the session devstack and the benchmark runner
start with) and the repository layout. Tests that change objects use names of their own; these
are the shared, read-only ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

# -- the seed world ----------------------------------------------------------------------------

TENANT: Final = "11111111-1111-1111-1111-111111111111"
VAULT: Final = "testkv"
OTHER_VAULT: Final = "otherkv"
NAMESPACE: Final = "default"

CSI_POD: Final = "nginx-csi-kv-podid"  # NMI gives it the `pod-identity` identity
FLEX_POD: Final = "nginx-flex-kv-podid"  # the same identity, for the azure/kv examples
NO_ACCESS_POD: Final = "no-access-pod"  # an identity without an access policy on the vault
SLOW_POD: Final = "slow-pod"  # NMI answers for it after a delay
NO_IDENTITY_POD: Final = "pod-with-no-identity"  # not in the seed: NMI has no identity for it
# A fixed pod uid for requests whose uid does not matter (one pod, many volumes).
POD_UID: Final = "0f0e0d0c-0000-4000-8000-000000000001"

SECRET: Final = "secret1"
SECRET_VALUE: Final = "testkv-secret1-value"
KEY: Final = "key1"
CERT: Final = "cert1"

SP_IDENTITY: Final = "kvcreds"  # a service principal with read access to the vault
WORKLOAD_IDENTITY: Final = "workload"  # federated with default/workload-sa
WORKLOAD_SA: Final = "workload-sa"
VM_USER_IDENTITY: Final = "vm-user"

# -- the node plugin ----------------------------------------------------------------------------

DRIVER_NAME: Final = "kv.csi.azure.com"
NODE_ID: Final = "test-node"

# -- the repository -----------------------------------------------------------------------------

REPO: Final = Path(__file__).resolve().parents[2]
SHIM: Final = REPO / "flexvolume" / "azure~kv" / "kv"
SHIM_INSTALLER: Final = REPO / "flexvolume" / "install.sh"
