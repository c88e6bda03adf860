"""The Tailscale side: one API client for Tailscale's hosted API and for Headscale.

Knows Tailscale and nothing of Kubernetes or Envoy. It holds the client (OAuth client
credentials or an API key; auth keys, devices, Tailscale Services), the auth-key lifecycle of a
proxy replica, and the tailscaled/containerboot configuration of a proxy as plain data.
"""
