"""The Envoy Gateway extension server (grpclib), answering its hooks from the in-memory model.

It sits on Envoy Gateway's translation path, so it never calls an API while answering.
"""
