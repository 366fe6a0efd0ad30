"""The aad-pod-identity custom resources (`aadpodidentity.k8s.io/v1`) as typed, validated values.

Field names and meanings follow the published CRDs users already have (camelCase, with the
capitalised pre-1.6 spellings recognised and warned about). `types` is pure data (no network, no
`kube`); `resources` holds the client library's resource classes and the CRD manifests.
"""

from podidentity.crds.types import (
    API_VERSION,
    ASSIGNED_FINALIZER,
    BEHAVIOR_ANNOTATION,
    BINDING_LABEL,
    GROUP,
    NODE_LABEL,
    POD_UID_ANNOTATION,
    VERSION,
    AssignedState,
    AzureAssignedIdentity,
    AzureIdentity,
    AzureIdentityBinding,
    AzurePodIdentityException,
    IdentityType,
    Meta,
    SecretRef,
)

__all__ = [
    "API_VERSION",
    "ASSIGNED_FINALIZER",
    "BEHAVIOR_ANNOTATION",
    "BINDING_LABEL",
    "GROUP",
    "NODE_LABEL",
    "POD_UID_ANNOTATION",
    "VERSION",
    "AssignedState",
    "AzureAssignedIdentity",
    "AzureIdentity",
    "AzureIdentityBinding",
    "AzurePodIdentityException",
    "IdentityType",
    "Meta",
    "SecretRef",
]
