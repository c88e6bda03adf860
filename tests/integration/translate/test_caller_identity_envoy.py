"""Real Envoy runs the caller-identity translation: behind a PROXY protocol v2 header (what
tailscaled's serve sends), an HTTP backend receives the caller's Tailscale-* headers looked up by
the header's source address, never a copy the caller sent; a TCP port with ``proxyProtocol``
opens its backend connection with a PROXY v2 header of the caller's address; a route policy
allows a policy-file group and refuses everyone else.

The backend is the bed's own (``tests/bed/backend.py``: ``/headers`` echoes the request's headers,
its PROXY port answers the source it read), run as a process on loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.integration.translate.test_envoy_runs_translation import (
    API,
    TAILNET,
    eventually,
    http_get,
    proxy_v2,
    static_bootstrap,
)
from tests.support.envoy import EnvoyFactory
from tests.support.process import free_port, tcp_open
from tests.support.xds import running_ads
from tsgw.translate import Device, Inputs, Options, TailnetFacts, User, node_cluster, translate
from tsgw.xds import Snapshot, SnapshotCache, bootstrap

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

FACTS = TailnetFacts(
    "tail.test",
    (
        Device("alice-laptop.tail.test", ("100.64.0.5",), user="alice@example.com"),
        Device("bob-phone.tail.test", ("100.64.0.6",), user="bob@example.com"),
        Device("ci.tail.test", ("100.64.0.9",), tags=("tag:ci", "tag:k8s"), user="alice@example.com"),
    ),
    services={"svc:app": ("100.100.0.5",)},
    claims={"svc:app": ("TailscaleServices/apps/app",)},
    users={
        "alice@example.com": User("Alice Liddell", ("group:eng",)),
        "bob@example.com": User("Bøb", ("group:sales",)),
    },
)


class Backend:
    """tests/bed/backend.py on loopback ports of its own."""

    def __init__(self) -> None:
        self.http, self.proxy = free_port(), free_port()
        env = {
            **os.environ,
            "POD_NAME": "backend",
            "HTTP_PORT": str(self.http),
            "PROXY_PORT": str(self.proxy),
            "TCP_PORT": str(free_port()),
            "GRPC_PORT": str(free_port()),
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "bed" / "backend.py")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually(
            lambda: tcp_open("127.0.0.1", self.http) and tcp_open("127.0.0.1", self.proxy), "backend up"
        )

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.close()


def _inputs(backend: Backend, policy: bool) -> Inputs:
    services = {
        "apiVersion": API,
        "kind": "TailscaleServices",
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {
            "tailnetRef": {"name": "corp"},
            "ports": [
                {"port": 80, "protocol": "HTTP", "targetPort": "http"},
                {"port": 5432, "targetPort": "proxy", "proxyProtocol": True},
            ],
            "backends": [{"service": "app"}],
        },
    }
    objects = [TAILNET, services]
    if policy:
        objects.append(
            {
                "apiVersion": API,
                "kind": "TailscaleRoutePolicy",
                "metadata": {"name": "eng", "namespace": "apps"},
                "spec": {
                    "targetRefs": [{"kind": "TailscaleServices", "name": "app", "sectionName": "http-80"}],
                    "access": {
                        "defaultAction": "Deny",
                        "rules": [{"action": "Allow", "groups": ["group:eng"]}],
                    },
                },
            }
        )
    svc = {
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {"ports": [{"name": "http", "port": 8080}, {"name": "proxy", "port": 9001}]},
    }
    eps = {
        "metadata": {"name": "app-1", "namespace": "apps", "labels": {"kubernetes.io/service-name": "app"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": backend.http}, {"name": "proxy", "port": backend.proxy}],
        "endpoints": [{"addresses": ["127.0.0.1"]}],
    }
    return Inputs(objects=objects, services=[svc], endpoint_slices=[eps], tailnets={"corp": FACTS})


def _envoy(envoy_factory: EnvoyFactory, inputs: Inputs, name: str) -> tuple[int, int]:
    result = translate(inputs, Options(first_listener_port=10080))
    bad = [(s.ref.name, c) for s in result.model.statuses for c in s.conditions if not c.status]
    assert not bad, bad
    (res,) = result.xds.values()
    boot = static_bootstrap(res)
    for li in boot["static_resources"]["listeners"]:
        li["address"]["socket_address"]["port_value"] = 0  # bound by Envoy, read back
    envoy = envoy_factory(boot, name=name)
    return envoy.listener_port("ingress-80"), envoy.listener_port("ingress-5432")


def _headers(port: int, src: str, forged: dict[str, str] | None = None) -> dict[str, str]:
    """The Tailscale-* headers the backend received (lower-cased names) for a call from ``src``."""
    answer = http_get(port, "/headers", headers=forged, preamble=proxy_v2(src))
    assert answer.startswith("200 backend"), answer
    out: dict[str, str] = {}
    for line in answer.splitlines()[1:]:
        name, _, value = line.partition(":")
        if name.lower().startswith(("tailscale-", "tailscale_")):
            out[name.lower()] = value.strip()
    return out


FORGED = {
    "Tailscale-User-Login": "mallory@example.com",
    "tailscale-user-name": "Mallory",
    "Tailscale_User_Login": "mallory@example.com",
    "TAILSCALE-NODE-TAGS": "tag:admin",
    "Tailscale-Anything": "x",
}


def test_the_backend_sees_the_callers_identity_and_never_a_forged_one(
    envoy_factory: EnvoyFactory, backend: Backend
) -> None:
    http, _ = _envoy(envoy_factory, _inputs(backend, policy=False), "identity")
    eventually(lambda: http_get(http, "/", preamble=proxy_v2("100.64.0.5")).startswith("200"), "HTTP up")
    assert _headers(http, "100.64.0.5", FORGED) == {
        "tailscale-user-login": "alice@example.com",
        "tailscale-user-name": "Alice Liddell",
        "tailscale-node-name": "alice-laptop.tail.test",
    }
    # A display name that is not ASCII arrives RFC 2047 encoded, as Tailscale's serve sends it.
    assert _headers(http, "100.64.0.6")["tailscale-user-name"] == "=?utf-8?q?B=C3=B8b?="
    # A tagged device is named by its tags, never by the user who tagged it.
    assert _headers(http, "100.64.0.9", FORGED) == {
        "tailscale-node-name": "ci.tail.test",
        "tailscale-node-tags": "tag:ci,tag:k8s",
    }
    # An address the facts do not know: no identity at all, and nothing forged gets through.
    assert _headers(http, "100.99.0.1", FORGED) == {}


def test_a_tcp_port_with_proxy_protocol_hands_the_callers_address_to_the_backend(
    envoy_factory: EnvoyFactory, backend: Backend
) -> None:
    _, tcp = _envoy(envoy_factory, _inputs(backend, policy=False), "proxy-v2")

    def answer() -> str:
        with socket.create_connection(("127.0.0.1", tcp), timeout=5) as s:
            s.sendall(proxy_v2("100.64.0.6", sport=41234, dport=5432))
            return s.recv(256).decode()

    assert eventually(answer, "the PROXY port answers") == "backend 100.64.0.6 41234\n"


def test_a_policy_allows_a_policy_file_group_and_refuses_everyone_else(
    envoy_factory: EnvoyFactory, backend: Backend
) -> None:
    http, tcp = _envoy(envoy_factory, _inputs(backend, policy=True), "groups")
    alice = proxy_v2("100.64.0.5")
    eventually(lambda: http_get(http, "/", preamble=alice).startswith("200"), "alice (group:eng) answered")
    assert http_get(http, "/", preamble=proxy_v2("100.64.0.6")) == ""  # bob: group:sales
    # The tagged device whose creator is in group:eng is not in the group: it has no user.
    assert http_get(http, "/", preamble=proxy_v2("100.64.0.9")) == ""
    # The policy names the HTTP port only: the TCP port still serves bob.
    with socket.create_connection(("127.0.0.1", tcp), timeout=5) as s:
        s.sendall(proxy_v2("100.64.0.6"))
        assert s.recv(256).startswith(b"backend 100.64.0.6 ")


@pytest.mark.anyio
@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_a_5000_device_table_reaches_envoy_over_ads_and_names_the_caller(
    delta: bool, envoy_factory: EnvoyFactory, backend: Backend
) -> None:
    """The table of a 5,000-device tailnet (a ~3.9 MB listener) goes through tsgw's own ADS
    server: Envoy ACKs it, and the caller is named."""
    many = TailnetFacts(
        "tail.test",
        tuple(
            Device(
                f"d{i}.tail.test",
                (f"100.65.{i // 256}.{i % 256}", f"fd7a:115c:a1e0::{i:x}"),
                user=f"u{i}@x.test",
            )
            for i in range(5000)
        ),
    )
    inputs = _inputs(backend, policy=False)
    listen = free_port()
    result = translate(
        Inputs(
            objects=inputs.objects,
            services=inputs.services,
            endpoint_slices=inputs.endpoint_slices,
            tailnets={"corp": many},
        ),
        Options(first_listener_port=listen),
    )
    ((ns, name), res) = next(iter(result.xds.items()))
    group = node_cluster(ns, name)
    assert max(li.ByteSize() for li in res.listeners) > 3_000_000
    cache = SnapshotCache()
    cache.set_snapshot(group, Snapshot(res.by_type(), version="v1"))
    async with running_ads(cache) as (_, xds_port):
        envoy = envoy_factory(
            bootstrap("big-0", group, f"127.0.0.1:{xds_port}", delta=delta, admin_port=0),
            name=f"big-{'delta' if delta else 'sotw'}",
            start=False,
        )
        await envoy.astart(wait_s=120)

        def named() -> dict[str, str] | None:
            seen = _headers(listen, "100.65.19.135")
            return seen or None

        seen = await anyio.to_thread.run_sync(lambda: eventually(named, "the caller named", timeout=120))
        assert seen["tailscale-user-login"] == f"u{19 * 256 + 135}@x.test"
        stats = await envoy.astats()
        assert stats["listener_manager.lds.update_rejected"] == 0
