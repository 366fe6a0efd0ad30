"""The four kinds as lightkube resources (generic, dict-backed: projections parse them with
`podidentity.crds.types`), and the CRD manifests that define them on a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightkube.generic_resource import create_namespaced_resource

from podidentity.crds.types import GROUP, VERSION

AzureIdentityResource: Any = create_namespaced_resource(
    GROUP, VERSION, "AzureIdentity", "azureidentities"
)
AzureIdentityBindingResource: Any = create_namespaced_resource(
    GROUP, VERSION, "AzureIdentityBinding", "azureidentitybindings"
)
AzureAssignedIdentityResource: Any = create_namespaced_resource(
    GROUP, VERSION, "AzureAssignedIdentity", "azureassignedidentities"
)
AzurePodIdentityExceptionResource: Any = create_namespaced_resource(
    GROUP, VERSION, "AzurePodIdentityException", "azurepodidentityexceptions"
)

CRD_MANIFEST = Path(__file__).with_name("crds.yaml")
"""The CRDs (the same file as `deploy/components/pod-identity/crds.yaml`; a test keeps them equal)."""


def crd_manifest() -> str:
    return CRD_MANIFEST.read_text()
