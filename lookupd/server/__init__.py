"""The gRPC server: app, servicer, what each RPC computes, reload, workers, admin, metrics."""
