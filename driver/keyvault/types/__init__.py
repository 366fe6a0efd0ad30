"""Key Vault object types, one module each (`secret`, `key`, `cert`), listed in `registry`. A new
type is one new module plus its line in the registry and its `ObjectType` value."""
