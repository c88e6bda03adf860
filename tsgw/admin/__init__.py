"""The operator's debug API (gRPC, proto/tsgw/admin/v1): snapshots, per-Envoy ACK/NACK state and
the model, served on its own port for the `tsgw` CLI.
"""
