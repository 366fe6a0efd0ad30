"""Generated protobuf and gRPC code for the secrets-store provider API; written by `make proto`."""
