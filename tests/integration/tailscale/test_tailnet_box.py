"""Tailscale Services hosted by real tailscaled through the tailnet in a box.

The control plane is ``tsgw-testcontrol`` (tailscale's own testcontrol, see
``tests/tailnet/README.md``); every node is a real tailscaled v1.102.3, the service hosts run
under tailscale's own ``containerboot`` configured only from :class:`tsgw.tailscale.ProxyConfig`
(serve config with a TCP forward and PROXY protocol v2). A client node reaches a service through
its SOCKS5 server, so every byte crosses WireGuard inside the box's namespace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.support.tailnet import Node
from tests.support.tailnet_box import (
    ProxyProtocolBackend,
    TailnetBox,
    fetch,
    wait_for,
)
from tsgw.tailscale import HostedService, ProxyConfig, ServePort

pytestmark = pytest.mark.integration

SOCKS = 1080
SVC = "svc:web"


def _backend(box: TailnetBox, name: str) -> ProxyProtocolBackend:
    with box.ns.entered():  # listens on 127.0.0.1 inside the namespace, where the proxies forward
        return ProxyProtocolBackend(name)


def _proxy(
    box: TailnetBox, name: str, backend: ProxyProtocolBackend, *, tags: tuple[str, ...] = ("tag:proxy",)
) -> Node:
    """A proxy replica: containerboot with tsgw's ProxyConfig, hosting svc:web port 80."""
    cfg = ProxyConfig(
        hostname=name,
        tags=tags,
        login_server=box.url,
        auth_key=box.auth_key(tags),
        services=(HostedService(SVC, (ServePort(80, backend.port),)),),
        serve_config_path="serve-config.json",
        outbound_http_proxy="",
        local_addr_port="",
    )
    return box.start_proxy(name, cfg.env(), serve_config=cfg.serve_config_json())


def _client(box: TailnetBox, name: str = "client") -> Node:
    return box.join(
        name, box.auth_key(("tag:client",)), args=(f"--socks5-server=127.0.0.1:{SOCKS + len(box.nodes)}",)
    )


def _socks(node: Node) -> int:
    return next(int(a.rsplit(":", 1)[1]) for a in node.process.argv if a.startswith("--socks5-server="))


def _host(box: TailnetBox, name: str) -> dict[str, object]:
    return next(h for h in box.admin.service_hosts(SVC) if h["name"].split(".")[0] == name)


def _primary(box: TailnetBox) -> str:
    return next((str(h["name"]).split(".")[0] for h in box.admin.service_hosts(SVC) if h["primary"]), "")


def _reach(box: TailnetBox, client: Node, host: str, timeout: float = 3) -> str:
    return fetch(box.ns, _socks(client), host, 80, timeout=timeout)


def _unreachable(box: TailnetBox, client: Node, host: str) -> bool:
    try:
        _reach(box, client, host, timeout=2)
    except OSError:
        return True
    return False


def _service_host_cap(node: Node) -> object:
    return (node.status()["Self"].get("CapMap") or {}).get("service-host")


def test_a_tagged_containerboot_proxy_hosts_a_service_reached_by_vip_and_magicdns_name(
    tailnet_box: TailnetBox,
) -> None:
    box = tailnet_box
    box.admin.set_auto_approvers({SVC: ["tag:proxy"]})
    svc = box.admin.put_service(SVC, ["tcp:80"], tags=["tag:web"], comment="ingress")
    vip4, vip6 = svc["addrs"]
    backend = _backend(box, "proxy-0")
    proxy = _proxy(box, "proxy-0", backend)
    client = _client(box)

    wait_for(lambda: _primary(box) == "proxy-0", what="proxy-0 carrying the VIP")
    # The control plane learnt the service from the host itself (ServicesHash, then c2n).
    assert _host(box, "proxy-0")["ports"] == ["tcp:80"]
    assert _service_host_cap(proxy) == [{SVC: [vip4, vip6]}]
    assert box.admin.node("proxy-0")["tags"] == ["tag:proxy"]  # from its auth key

    by_vip = wait_for(lambda: _reach(box, client, vip4), what="the VIP answering")
    by_name = _reach(box, client, "web.tailnet.test")
    client_ip = client.ip4()
    assert by_vip.startswith(f"backend=proxy-0 src={client_ip}:")
    assert by_name.startswith(f"backend=proxy-0 src={client_ip}:")
    assert [s.split(":")[0] for s in backend.sources] == [client_ip, client_ip]
    assert backend.errors == []


@dataclass
class _Sampler:
    """Fetches the VIP in a loop and records (time, answer or error) until stopped."""

    box: TailnetBox
    client: Node
    host: str
    samples: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # 3 s: a SYN lost while paths change is resent after 1 s (TCP's initial RTO).
                out = _reach(self.box, self.client, self.host, timeout=3).split(" ")[0]
            except OSError as e:
                out = f"error:{type(e).__name__}"
                time.sleep(0.05)
            self.samples.append((time.monotonic(), out))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_two_hosts_when_the_primary_stops_traffic_continues_through_the_other(
    tailnet_box: TailnetBox, how: str, record_property: Callable[[str, object], None]
) -> None:
    box = tailnet_box
    box.admin.set_auto_approvers({SVC: ["tag:proxy"]})
    vip4 = box.admin.put_service(SVC, ["tcp:80"])["addrs"][0]
    proxies = {name: _proxy(box, name, _backend(box, name)) for name in ("proxy-a", "proxy-b")}
    client = _client(box)
    wait_for(lambda: all(_host(box, name)["eligible"] for name in proxies), what="both hosts eligible")
    primary = _primary(box)  # whichever qualified first; the other stands by
    [standby] = [name for name in proxies if name != primary]
    wait_for(lambda: _reach(box, client, vip4).startswith(f"backend={primary}"), what="the primary answering")

    sampler = _Sampler(box, client, vip4)
    time.sleep(0.5)
    stopped = time.monotonic()
    if how == "sigterm":
        proxies[primary].process.stop(timeout=30)  # containerboot withdraws its services, waits 20 s, exits
    else:
        box.crash(proxies[primary])
    try:
        wait_for(
            lambda: any(out == f"backend={standby}" for _, out in sampler.samples), timeout=60, what=standby
        )
        time.sleep(1)
    finally:
        sampler.stop()

    print(f"\ntimeline ({how}, t=0 at the stop): {_timeline(sampler.samples, stopped)}")
    assert _primary(box) == standby
    last_a = max(t for t, out in sampler.samples if out == f"backend={primary}")
    first_b = min(t for t, out in sampler.samples if out == f"backend={standby}")
    after = {out for t, out in sampler.samples if t >= first_b and not out.startswith("error")}
    assert after == {f"backend={standby}"}  # once moved, it stays with the survivor
    gap, since_stop = first_b - last_a, first_b - stopped
    failed = sum(1 for t, out in sampler.samples if last_a < t < first_b)
    later = sum(1 for t, out in sampler.samples if t > first_b and out.startswith("error"))
    record_property("failover_gap_s", round(gap, 3))
    print(
        f"\nfailover ({how}): gap {gap:.3f} s, {since_stop:.3f} s after the stop, {failed} failed fetches"
        f" in the gap, {later} failed later"
    )


def _timeline(samples: list[tuple[float, str]], t0: float) -> str:
    """Runs of equal answers: ``proxy-a x12 (-0.61..-0.02) | error:timeout x3 (...) | ...``."""
    runs: list[list[object]] = []
    for t, out in samples:
        if runs and runs[-1][0] == out:
            runs[-1][1] = int(str(runs[-1][1])) + 1
            runs[-1][3] = t - t0
        else:
            runs.append([out, 1, t - t0, t - t0])
    return " | ".join(f"{o} x{n} ({a:+.2f}..{b:+.2f})" for o, n, a, b in runs)  # type: ignore[str-format]


def test_an_untagged_host_and_an_unapproved_host_get_no_traffic(tailnet_box: TailnetBox) -> None:
    box = tailnet_box
    box.admin.set_auto_approvers({SVC: ["tag:proxy"]})
    vip4 = box.admin.put_service(SVC, ["tcp:80"])["addrs"][0]
    untagged_backend = _backend(box, "untagged")
    untagged = _proxy(box, "untagged", untagged_backend, tags=())
    box.admin.approve(SVC, "untagged")  # even approved: untagged nodes cannot host services
    other_backend = _backend(box, "other")
    other = _proxy(box, "other", other_backend, tags=("tag:k8s",))  # not an autoApprover
    client = _client(box)

    wait_for(
        lambda: _host(box, "untagged")["advertised"] and _host(box, "other")["advertised"], what="advertised"
    )
    assert not _host(box, "untagged")["serviceHost"]
    assert not _host(box, "other")["approved"]
    assert _primary(box) == ""
    assert _unreachable(box, client, vip4)
    assert _service_host_cap(untagged) is None
    assert _service_host_cap(other) is None

    box.admin.approve(SVC, "other")  # the same host, now approved: traffic flows
    assert wait_for(lambda: _reach(box, client, vip4), what="approved host answering").startswith(
        "backend=other"
    )
    assert untagged_backend.sources == []


def test_deleting_the_service_stops_traffic(tailnet_box: TailnetBox) -> None:
    box = tailnet_box
    box.admin.set_auto_approvers({SVC: ["tag:proxy"]})
    vip4 = box.admin.put_service(SVC, ["tcp:80"])["addrs"][0]
    proxy = _proxy(box, "proxy-0", _backend(box, "proxy-0"))
    client = _client(box)
    wait_for(lambda: _reach(box, client, vip4), what="the VIP answering")

    box.admin.delete_service(SVC)
    wait_for(lambda: _unreachable(box, client, vip4), what="the VIP going dark")
    assert _unreachable(box, client, "web.tailnet.test")
    wait_for(lambda: _service_host_cap(proxy) is None, what="the service-host capability withdrawn")


def test_a_deleted_device_is_logged_out(tailnet_box: TailnetBox) -> None:
    box = tailnet_box
    node = box.join("doomed", box.auth_key(("tag:k8s",)))
    peer = _client(box)
    box.wait_peers(peer, 1)
    node_id = box.admin.node("doomed")["id"]

    box.admin.delete_node(node_id)
    wait_for(lambda: node.status()["BackendState"] == "NeedsLogin", what="NeedsLogin")
    assert "doomed" not in [n["hostname"] for n in box.admin.nodes()]
    ip = node.status()["TailscaleIPs"]
    wait_for(
        lambda: all(
            p.get("Expired") for p in peer.status()["Peer"].values() if set(p["TailscaleIPs"]) & set(ip)
        ),
        what="peers see it expired",
    )


def test_an_expired_node_rejoins_with_a_new_key(tailnet_box: TailnetBox) -> None:
    box = tailnet_box
    node = box.join("proxy-0", box.auth_key(("tag:proxy",)))
    peer = _client(box)
    box.wait_peers(peer, 1)
    before = box.admin.node("proxy-0")
    ip = node.ip4()

    box.admin.expire_node(before["id"])
    wait_for(lambda: node.status()["BackendState"] == "NeedsLogin", what="NeedsLogin after expiry")

    used = box.auth_key(("tag:proxy",))  # the old key is single-use and spent: a new one
    node.up(used)
    wait_for(lambda: node.status()["BackendState"] == "Running", what="Running again")
    after = box.admin.node("proxy-0")
    assert after["id"] == before["id"]  # the same device, as on Tailscale
    assert after["nodeKey"] != before["nodeKey"]
    assert not after["expired"]
    assert after["tags"] == ["tag:proxy"]
    assert node.ip4() == ip
    # Peers reach it again (the old key's entry no longer shadows it).
    wait_for(lambda: peer.cli("ping", "--c=1", "--timeout=2s", ip, timeout=10), what="ping")


def test_a_spent_single_use_key_is_refused_and_rate_limited_registers_are_retried(
    tailnet_box: TailnetBox,
) -> None:
    box = tailnet_box
    key = box.auth_key(("tag:proxy",))
    box.join("first", key)
    second = box.start_node("second")
    with pytest.raises(RuntimeError, match="timeout"):  # never Running
        second.up(key, "--timeout=10s")  # the register succeeds; the box refuses the node right after
    wait_for(lambda: second.status()["BackendState"] == "NeedsLogin", what="the second node refused")
    assert [n["hostname"] for n in box.admin.nodes()] == ["first"]
    [k] = [k for k in box.admin.list_keys() if k["tags"] == ["tag:proxy"]]
    assert k["uses"] == 1

    box.admin.rate_limit_register(reject_next=1, retry_after="1")
    third = box.start_node("third")
    with pytest.raises(RuntimeError, match="rate limited"):
        third.up(box.auth_key(("tag:proxy",)))  # `tailscale up` reports the 429 ...
    # ... and tailscaled retries the registration by itself.
    wait_for(lambda: third.status()["BackendState"] == "Running", timeout=90, what="Running after the retry")
    stats = box.admin.register_stats()
    assert stats["rejected"] == 1
    assert stats["attempts"] >= 3
