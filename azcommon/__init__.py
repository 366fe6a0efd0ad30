"""Azure pieces shared by the node plugin (`driver`) and pod identity (`podidentity`).

- `errors`: the one exception tree (each edge maps it in one place of its own);
- `cloud`: Azure clouds and their endpoints (per daemon config, per volume name);
- `http`: the HTTP session and the azure-core transport on top of it;
- `retry`: deadlines, backoff and `Retry-After` pacing;
- `log`: logging setup that never prints secret values or tokens;
- `credentials`: azure-core token credentials for Entra ID (client secret, client assertion /
  workload identity) and IMDS (managed identities), with their error hints.

Dependency rule (import-linter, `make lint`): `azcommon` imports neither `driver`, `podidentity`
nor `kube`; both components may import it.
"""
