"""Tailscale Services in the box, the way tsgw runs them: helpers for tests and benchmarks.

A service host is tailscale's ``containerboot`` configured only from
:class:`tsgw.tailscale.ProxyConfig` (serve config ``Services`` map, a TCP forward to a loopback
backend with PROXY protocol v2); a client is a tailscaled with a SOCKS5 server; a
:class:`~tests.support.tailnet_box.ProxyProtocolBackend` answers with its name and the
client's tailnet address. :func:`run_failover` measures what a client sees when the primary
host of a service stops.

Everything a real tailnet's API offers goes through the documented API, with tsgw's own
:class:`~tsgw.tailscale.TailscaleClient` against the hosted-API fake bound to the box (keys,
services, devices) and the policy file endpoint (``autoApprovers``). The box's admin API is
used only to observe what the hosted API does not show (which host carries a service's VIPs,
``host_status``/``primary``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.support.boxed_fake import BoxedTailnet
from tests.support.tailnet import Node
from tests.support.tailnet_box import ProxyProtocolBackend, TailnetBox, fetch, wait_for
from tsgw.tailscale import AuthKeyRequest, HostedService, ProxyConfig, ServePort, TailscaleService

SVC = "svc:web"


def backend(box: TailnetBox, name: str) -> ProxyProtocolBackend:
    """A PROXY-protocol backend on 127.0.0.1 inside the box's namespace."""
    with box.ns.entered():
        return ProxyProtocolBackend(name)


def auth_key(tn: BoxedTailnet, tags: tuple[str, ...]) -> str:
    """A single-use key minted through the API: by tsgw's OAuth client, or, untagged (which
    an OAuth client may not mint), with a user's API key."""
    ts = tn.ts if tags else tn.user_ts
    return tn.call(ts.create_auth_key, AuthKeyRequest(tags=tags)).key


def define_service(
    tn: BoxedTailnet, ports: tuple[str, ...] = ("tcp:80",), name: str = SVC
) -> TailscaleService:
    """Create or update a Tailscale Service through the API (``PUT .../vip-services/{name}``)."""
    return tn.call(lambda: tn.ts.ensure_service(name, ports=ports))


def auto_approve(tn: BoxedTailnet, services: dict[str, list[str]]) -> None:
    """Set the policy's ``autoApprovers.services`` through the policy file endpoint."""
    tn.set_policy(services=services)


def service_proxy(
    tn: BoxedTailnet,
    name: str,
    target: ProxyProtocolBackend,
    *,
    tags: tuple[str, ...] = ("tag:proxy",),
    service: str = SVC,
    port: int = 80,
) -> Node:
    """A proxy replica hosting ``service`` port ``port``, joined with a key carrying ``tags``."""
    box = tn.box
    cfg = ProxyConfig(
        hostname=name,
        tags=tags,
        login_server=box.url,
        auth_key=auth_key(tn, tags),
        services=(HostedService(service, (ServePort(port, target.port),)),),
        serve_config_path="serve-config.json",
        outbound_http_proxy="",
        local_addr_port="",
    )
    return box.start_proxy(name, cfg.env(), serve_config=cfg.serve_config_json())


def socks_client(tn: BoxedTailnet, name: str = "client") -> Node:
    """A tagged tailscaled (``tag:client``) with a SOCKS5 server inside the namespace."""
    return tn.box.join(name, auth_key(tn, ("tag:client",)), socks5=True)


def reach(box: TailnetBox, client: Node, host: str, port: int = 80, timeout: float = 3) -> str:
    """The backend's answer line, through ``client``'s SOCKS5 server; raises OSError."""
    return fetch(box.ns, int(client.extra["socks5"]), host, port, timeout=timeout)


def unreachable(box: TailnetBox, client: Node, host: str) -> bool:
    try:
        reach(box, client, host, timeout=2)
    except OSError:
        return True
    return False


# The hosted API does not say which host carries a service's traffic: observed on the box.
def host_status(box: TailnetBox, name: str, service: str = SVC) -> dict[str, object]:
    """The box's view of one host of ``service`` (see ``GET /api/services/{svc}/hosts``)."""
    return next(h for h in box.admin.service_hosts(service) if str(h["name"]).split(".")[0] == name)


def primary(box: TailnetBox, service: str = SVC) -> str:
    """The hostname of the host carrying the service's VIPs, or ""."""
    return next((str(h["name"]).split(".")[0] for h in box.admin.service_hosts(service) if h["primary"]), "")


@dataclass
class Sampler:
    """Opens a fresh connection to ``host`` every 50 ms; records (time, first word or error)."""

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
                out = reach(self.box, self.client, self.host, timeout=3).split(" ")[0]
            except OSError as e:
                out = f"error:{type(e).__name__}"
            self.samples.append((time.monotonic(), out))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def timeline(samples: list[tuple[float, str]], t0: float) -> str:
    """Runs of equal answers: ``backend=proxy-a x10 (-0.50..-0.01) | backend=proxy-b x19 (...)``."""
    runs: list[tuple[str, int, float, float]] = []
    for t, out in samples:
        if runs and runs[-1][0] == out:
            o, n, a, _ = runs[-1]
            runs[-1] = (o, n + 1, a, t - t0)
        else:
            runs.append((out, 1, t - t0, t - t0))
    return " | ".join(f"{o} x{n} ({a:+.2f}..{b:+.2f})" for o, n, a, b in runs)


@dataclass
class Failover:
    """What a client saw while the primary host of a service stopped."""

    how: str
    primary: str
    standby: str
    stopped: float
    samples: list[tuple[float, str]]

    def _times(self, who: str) -> list[float]:
        return [t for t, out in self.samples if out == f"backend={who}"]

    @property
    def gap(self) -> float:
        """Seconds between the old primary's last answer and the standby's first."""
        return min(self._times(self.standby)) - max(self._times(self.primary))

    @property
    def since_stop(self) -> float:
        """Seconds from the stop to the standby's first answer."""
        return min(self._times(self.standby)) - self.stopped

    def failed(self, *, after_switch: bool) -> int:
        first_b = min(self._times(self.standby))
        last_a = max(self._times(self.primary))
        return sum(
            1
            for t, out in self.samples
            if out.startswith("error") and ((t > first_b) if after_switch else (last_a < t < first_b))
        )

    def answers_after_switch(self) -> set[str]:
        first_b = min(self._times(self.standby))
        return {out for t, out in self.samples if t >= first_b and not out.startswith("error")}

    def summary(self) -> str:
        return (
            f"failover ({self.how}): gap {self.gap:.3f} s, {self.since_stop:.3f} s after the stop, "
            f"{self.failed(after_switch=False)} failed fetches in the gap, "
            f"{self.failed(after_switch=True)} failed later; "
            f"timeline (t=0 at the stop): {timeline(self.samples, self.stopped)}"
        )


def run_failover(tn: BoxedTailnet, how: str) -> Failover:
    """Two hosts of svc:web and a client; stop the primary (``sigterm``: containerboot's own
    shutdown, which withdraws the service first; ``sigkill``: the proxy and its tailscaled die)
    while the client connects every 50 ms, until the standby answers."""
    box = tn.box
    auto_approve(tn, {SVC: ["tag:proxy"]})
    vip4 = define_service(tn).addrs[0]
    proxies = {name: service_proxy(tn, name, backend(box, name)) for name in ("proxy-a", "proxy-b")}
    client = socks_client(tn)
    wait_for(lambda: all(host_status(box, name)["eligible"] for name in proxies), what="both hosts eligible")
    first = primary(box)  # whichever qualified first; the other stands by
    [standby] = [name for name in proxies if name != first]
    wait_for(lambda: reach(box, client, vip4).startswith(f"backend={first}"), what="the primary answering")

    sampler = Sampler(box, client, vip4)
    time.sleep(0.5)
    stopped = time.monotonic()
    if how == "sigterm":
        proxies[first].process.stop(timeout=30)  # withdraws its services, waits 20 s, exits
    elif how == "sigkill":
        box.crash(proxies[first])
    else:
        raise ValueError(how)
    try:
        wait_for(
            lambda: any(out == f"backend={standby}" for _, out in sampler.samples), timeout=60, what=standby
        )
        time.sleep(1)
    finally:
        sampler.stop()
    return Failover(how, first, standby, stopped, sampler.samples)
