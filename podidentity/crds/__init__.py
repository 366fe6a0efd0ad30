"""The aad-pod-identity custom resources (`aadpodidentity.k8s.io/v1`) as typed, validated values.

Field names and meanings follow the published CRDs users already have (camelCase, with the
capitalised pre-1.6 spellings recognised and warned about). Pure data: this package imports
neither `kube` nor any network code, so NMI, MIC and their tests can all use it.
"""
