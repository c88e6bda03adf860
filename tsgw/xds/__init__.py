"""The xDS control plane: snapshots, the snapshot cache and the aggregated discovery server.

Knows Envoy's API and nothing of Kubernetes or Tailscale; it could be published on its own.
Snapshots are checked for consistency before they are served, each resource is encoded once per
version, and the ADS server speaks state-of-the-world and delta on one stream, never resending
a version an Envoy rejected. It also writes Envoy bootstraps and keeps per-node ACK/NACK status.
"""
