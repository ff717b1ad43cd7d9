"""The gRPC face of a node: Dapr's job methods on the one JobService, and payload conversion."""
