"""The intermediate model between the API and every output: proxy groups, listeners, routes,
clusters with priorities, weights and health checks, endpoints and policies.

Pure data with no I/O and a deterministic order, so the same input always gives the same bytes.
"""
