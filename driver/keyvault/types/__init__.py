"""Key Vault object types, one module each (`secret`, `key`, `cert`), listed in `registry`. A new
type is one new module plus its line in the registry and its `ObjectType` value.

Beside them: `selection` (entries that select objects from a vault listing by name glob or tags)
and `certparts` (a certificate-backed secret split into key, leaf, chain and bundle files)."""
