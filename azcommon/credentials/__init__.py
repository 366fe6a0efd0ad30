"""azure-core `TokenCredential`s for Entra ID and IMDS, cached with single-flight refresh."""
