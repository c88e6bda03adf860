"""Envoy resources for xDS tests, as JSON-shaped dicts (the way tsgw.xds accepts them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import httpx

from tsgw.xds import (
    AdsServer,
    ClusterDiscovery,
    EndpointDiscovery,
    ListenerDiscovery,
    RouteDiscovery,
    Snapshot,
    SnapshotCache,
    TypeStatus,
)

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def cluster(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "EDS",
        "connect_timeout": "1s",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
        **extra,
    }


def endpoints(name: str, ports: Sequence[int], host: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "cluster_name": name,
        "endpoints": [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": host, "port_value": p}}}}
                    for p in ports
                ]
            }
        ],
    }


def listener(name: str, port: int, route_name: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM,
                            "stat_prefix": name,
                            "rds": {
                                "route_config_name": route_name,
                                "config_source": {"ads": {}, "resource_api_version": "V3"},
                            },
                            "http_filters": [
                                {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}
                            ],
                        },
                    }
                ]
            }
        ],
    }


def routes(name: str, prefix_to_cluster: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "virtual_hosts": [
            {
                "name": "all",
                "domains": ["*"],
                "routes": [
                    {"match": {"prefix": prefix}, "route": {"cluster": c}}
                    for prefix, c in prefix_to_cluster.items()
                ],
            }
        ],
    }


def proxy_snapshot(
    port: int,
    backends: Mapping[str, Sequence[int]],
    prefix_to_cluster: Mapping[str, str],
    *,
    version: str = "",
    check: bool = True,
    cluster_extra: Mapping[str, Mapping[str, Any]] | None = None,
    endpoints_extra: Mapping[str, Any] | None = None,
) -> Snapshot:
    """One listener on ``port`` routing prefixes to EDS clusters with loopback endpoints."""
    extra = cluster_extra or {}
    return Snapshot(
        {
            ClusterDiscovery: [cluster(n, **extra.get(n, {})) for n in backends],
            EndpointDiscovery: [
                {**endpoints(n, ports), **(endpoints_extra or {})} for n, ports in backends.items()
            ],
            ListenerDiscovery: [listener("http", port, "local")],
            RouteDiscovery: [routes("local", prefix_to_cluster)],
        },
        version=version,
        check=check,
    )


@contextlib.asynccontextmanager
async def running_ads(cache: SnapshotCache, port: int = 0, **kw: Any) -> AsyncIterator[tuple[AdsServer, int]]:
    """An :class:`AdsServer` serving ``cache`` on loopback for the duration of the block."""
    server = AdsServer(cache, **kw)
    async with anyio.create_task_group() as tg:
        bound = await tg.start(server.serve, "127.0.0.1", port)
        try:
            yield server, bound
        finally:
            tg.cancel_scope.cancel()


async def get(port: int, path: str = "/", wait_s: float = 5.0) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=wait_s) as client:
        return await client.get(f"http://127.0.0.1:{port}{path}")


async def eventually(check: Callable[[], Awaitable[bool]], what: str, wait_s: float = 20.0) -> None:
    """Poll an async condition until true; fail naming ``what``."""
    deadline = anyio.current_time() + wait_s
    last: BaseException | None = None
    while anyio.current_time() < deadline:
        try:
            if await check():
                return
        except (httpx.HTTPError, OSError, KeyError, ValueError) as e:
            last = e
        await anyio.sleep(0.05)
    raise AssertionError(f"not {what} after {wait_s} s (last error: {last!r})")


def type_status(server: AdsServer, type_url: str, node_id: str | None = None) -> TypeStatus:
    for s in server.streams():
        if node_id is None or s.node_id == node_id:
            for t in s.types:
                if t.type_url == type_url:
                    return t
    raise KeyError(type_url)
