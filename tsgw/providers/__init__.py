"""Where desired state comes from: Kubernetes informers, or a folder of YAML (standalone mode).

Both feed the same translate pipeline and the same xDS server.
"""
