"""raypipe's control plane: the gRPC services, durable storage, and run supervision."""
