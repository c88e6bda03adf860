"""Prometheus metrics of the control-plane clients (``tsgw_tailscale_*``), on the process's one
registry (``prometheus_client.REGISTRY``) beside ``tsgw_xds_*`` and the controller-runtime
series. ``tailnet`` is the name the client was given (``ClientOptions.name``: the
TailscaleTailnet object's), so one tailnet's failing API is told apart from another's."""

from __future__ import annotations

from prometheus_client import Counter

API_REQUESTS = Counter(
    "tsgw_tailscale_api_requests_total",
    "HTTP requests to a tailnet's control-plane API, every attempt counted, by tailnet, backend "
    "(tailscale, headscale), method and code (the HTTP status, or <error> when no answer came).",
    ["tailnet", "backend", "method", "code"],
)
AUTH_KEYS_MINTED = Counter(
    "tsgw_tailscale_auth_keys_minted_total",
    "Auth keys minted for proxy replicas, by tailnet and reason: new (a replica without state) "
    "or reissue (a proxy whose key was refused asked for another).",
    ["tailnet", "reason"],
)
