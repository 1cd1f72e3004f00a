"""One module per gRPC service of ``raypipe.v1``."""
