"""Generated protobuf and gRPC code; this directory is written by `make proto`."""
