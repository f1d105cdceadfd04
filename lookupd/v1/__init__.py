"""Generated gRPC and protobuf code for ``proto/lookupd/v1/lookup.proto`` (``make protos``)."""
