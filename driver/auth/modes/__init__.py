"""Identity modes, one module each (`pod_identity`, `service_principal`, `vm_managed_identity`,
`workload_identity`), listed in `registry`. A new mode is one new module plus its line in the
registry and its `IdentityMode` value."""
