"""Settings of a hermetic tailnet (Headscale and tailscaled in a private network namespace),
shared by the tests (tests/support/tailnet.py) and `just run` (tools/standalone.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

HEADSCALE_PORT = 8080

HEADSCALE_FAST_BATCHING: Mapping[str, str] = {
    "batch_change_delay": "50ms",
    "node_store_batch_timeout": "20ms",
}
"""Headscale's two batching timers (defaults 800 ms and 500 ms) cut to what its own tests use:
a new node's registration answers and its first map arrives in ~0.1 s each instead of ~1 s each
(measured on the bed: the join, container start to Running, 0.3 s instead of 2.1 s)."""

# tailscaled in tests: no log upload, no port mapping, DERP over HTTP, never a public host.
TAILSCALED_ENV = {
    "TS_DEBUG_USE_DERP_HTTP": "1",
    "TS_NO_LOGS_NO_SUPPORT": "1",
    "TS_DISABLE_PORTMAPPER": "1",
    "TS_DEBUG_PERMIT_HTTP_C2N": "1",
    "TS_PANIC_IF_HIT_MAIN_CONTROL": "1",
}


def headscale_config(
    d: Path, listen: str, policy_mode: str = "file", tuning: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Headscale v0.29 config for a hermetic tailnet; every path under ``d``. ``policy_mode``
    ``file`` (default; no file: every node may reach every other) or ``database`` (the policy
    is set and read through the API, ``/api/v1/policy``). ``tuning``: Headscale's ``tuning:``
    section (default: none, Headscale's own defaults), e.g. :data:`HEADSCALE_FAST_BATCHING`."""
    host = listen.split(":")[0]
    return {
        "server_url": f"http://{listen}",
        "listen_addr": listen,
        "metrics_listen_addr": "",
        "grpc_listen_addr": f"{host}:50443",
        "grpc_allow_insecure": False,
        "noise": {"private_key_path": str(d / "noise_private.key")},
        "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"},
        "derp": {
            "server": {
                "enabled": True,
                "region_id": 999,
                "region_code": "test",
                "region_name": "Test Embedded DERP",
                "verify_clients": True,
                "stun_listen_addr": f"{host}:3478",
                "private_key_path": str(d / "derp_server_private.key"),
                "automatically_add_embedded_derp_region": True,
                "ipv4": host,
                "ipv6": "none",
            },
            "urls": [],
            "paths": [],
            "auto_update_enabled": False,
        },
        "disable_check_updates": True,
        "ephemeral_node_inactivity_timeout": "30m",
        "database": {"type": "sqlite", "sqlite": {"path": str(d / "db.sqlite"), "write_ahead_log": True}},
        "dns": {
            "magic_dns": True,
            "base_domain": "tailnet.test",
            "override_local_dns": False,
            "nameservers": {"global": []},
        },
        "policy": {"mode": policy_mode, "path": ""},
        "unix_socket": str(d / "headscale.sock"),
        "unix_socket_permission": "0770",
        "logtail": {"enabled": False},
        "log": {"level": "info"},
        **({"tuning": dict(tuning)} if tuning else {}),
    }
