"""Credentials for Key Vault, one per identity mode (`driver.auth.modes`): pod identity through
NMI (`nmi`), and the Entra ID / IMDS credentials of `azcommon.credentials` for the others, shared
per identity by `provider.CredentialProvider`."""
