"""The CRD types of gateway.tailscale.com/v1alpha1 and the CRD manifests generated from them.

Pure data: one source of truth for the schema (OpenAPI with defaults, enums and CEL rules) from
which `tsgw crds` prints the manifests committed under deploy/kustomize/base/crds/.
"""
