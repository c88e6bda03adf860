"""The reconcilers: read caches, call translate, apply owned objects, call the Tailscale
client, write status and publish snapshots. Glue, kept thin.
"""
