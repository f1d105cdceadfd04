"""The lookup engine: range tables, reserved space and ``Database``; arrays in, answers out.

No file format, policy, gRPC or YAML here: everything else builds on this layer.
"""
