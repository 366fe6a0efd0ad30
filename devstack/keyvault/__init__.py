"""Key Vault data-plane emulator for one vault: secrets, keys and certificates with versions,
the bearer challenge, access policies, and the real service's JSON bodies and error codes.

`app` holds what every request goes through (authentication, checks, errors, dispatch);
`secrets`, `keys` and `certificates` hold one object family each; `common` what they share."""

from devstack.keyvault.app import KeyVaultApp
from devstack.keyvault.common import KEYVAULT_RESOURCE

__all__ = ["KEYVAULT_RESOURCE", "KeyVaultApp"]
