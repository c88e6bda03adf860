"""Standalone mode end to end: the real `tsgw run --standalone` process serving a copy of
examples/standalone to a real Envoy, which routes real requests to real HTTP backends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.standalone import Tsgw, copy_example, get, ingress_envoy, wait_until, write
from tests.support.backend import HttpBackend
from tests.support.envoy import Envoy
from tests.support.process import free_port

pytestmark = pytest.mark.e2e


@dataclass
class Demo:
    folder: Path
    tsgw: Tsgw
    envoy: Envoy
    primary: HttpBackend
    standby: HttpBackend

    @property
    def port(self) -> int:
        return self.tsgw.listener_port


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    primary = HttpBackend("primary").start()
    standby = HttpBackend("standby").start()
    folder = copy_example(tmp_path / "standalone", primary.port, standby.port)
    tsgw = Tsgw(folder, tmp_path)
    envoy: Envoy | None = None
    try:
        envoy = ingress_envoy(tsgw, tmp_path)
        yield Demo(folder, tsgw, envoy, primary, standby)
    finally:
        if envoy is not None:
            envoy.stop()
        tsgw.stop()
        primary.stop()
        standby.stop()


def test_a_request_through_envoy_reaches_the_primary_backend(demo: Demo) -> None:
    assert wait_until(lambda: get(demo.port) == (200, "primary"))
    assert demo.primary.requests >= 1
    assert demo.standby.requests == 0
    # `tsgw status` shows the Envoy connected and in sync, and the folder without problems.
    status = demo.tsgw.status()
    assert "web-0" in status
    assert "web-tssvc.demo" in status
    assert "SYNCED" in status
    assert "NACKED" not in status
    assert "ok, " in status


def test_probes_and_metrics_show_the_connected_envoy_and_its_pushes(demo: Demo) -> None:
    assert wait_until(lambda: get(demo.port) == (200, "primary"))
    assert demo.tsgw.probe("/healthz") == (200, "ok")
    assert demo.tsgw.probe("/readyz")[0] == 200
    code, text = demo.tsgw.probe("/metrics")
    assert code == 200
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples['tsgw_xds_connected_streams{variant="sotw"}'] == 1.0
    for kind in ("cds", "eds", "lds", "rds"):
        assert samples[f'tsgw_xds_pushes_total{{type="{kind}"}}'] >= 1.0
    assert samples['tsgw_xds_snapshot_generation{group="web-tssvc.demo"}'] >= 1.0
    assert "process_resident_memory_bytes" in samples


def test_editing_a_file_changes_the_route(demo: Demo) -> None:
    assert wait_until(lambda: get(demo.port, "/standby/x") == (200, "primary"))
    web = demo.folder / "web.yaml"
    text = web.read_text()
    edited = text.replace("      # - pathPrefix: /standby/\n      #   services: [web-standby]\n", "")
    edited = edited.replace(
        "      - pathPrefix: /             #",
        "      - pathPrefix: /standby/\n        services: [web-standby]\n      - pathPrefix: /             #",
    )
    assert edited != text
    write(web, edited)
    assert wait_until(lambda: get(demo.port, "/standby/x") == (200, "standby"))
    assert get(demo.port, "/other") == (200, "primary")


def test_stopping_the_primary_backend_fails_over_to_the_next_priority(demo: Demo) -> None:
    assert wait_until(lambda: get(demo.port) == (200, "primary"))
    demo.primary.stop()
    assert wait_until(lambda: get(demo.port) == (200, "standby"))
    # Every request now goes to the standby, none fails.
    assert [get(demo.port) for _ in range(10)] == [(200, "standby")] * 10


def test_a_malformed_file_keeps_traffic_on_the_last_good_config_and_status_names_it(demo: Demo) -> None:
    assert wait_until(lambda: get(demo.port) == (200, "primary"))
    web = demo.folder / "web.yaml"
    text = web.read_text()
    # A schema error: UDP on a Tailscale Service port; and the route would change if it applied.
    bad = text.replace("      protocol: HTTP ", "      protocol: UDP  ").replace(
        "    - service: web-primary\n      priority: 0", "    - service: web-primary\n      priority: 2"
    )
    assert bad != text
    line = next(i for i, ln in enumerate(bad.splitlines(), 1) if "protocol: UDP" in ln)
    write(web, bad)
    expected = f"{web.name}:{line}: spec.ports[0].protocol: Tailscale Services carry TCP only"
    status = wait_until(lambda: _status_with(demo, expected))
    assert "1 problem(s)" in status
    assert [get(demo.port) for _ in range(5)] == [(200, "primary")] * 5

    # Broken YAML is reported with its line too, and traffic still flows.
    write(web, text + "  oops: [unclosed\n")
    status = wait_until(lambda: _status_with(demo, "invalid YAML"))
    assert f"{web.name}:" in status
    assert get(demo.port) == (200, "primary")

    # Fixing the file clears the problem.
    write(web, text)
    wait_until(lambda: _status_with(demo, "ok, "))
    assert get(demo.port) == (200, "primary")


def _status_with(demo: Demo, text: str) -> str:
    """`tsgw status` output if it contains ``text``, else empty (for wait_until)."""
    out = demo.tsgw.status()
    return out if text in out else ""


def test_thousands_of_unreachable_endpoints_leave_traffic_on_the_real_backends(demo: Demo) -> None:
    assert wait_until(lambda: get(demo.port) == (200, "primary"))
    # A new Service whose 5,000 endpoints (5 slices, the API's 1,000 a slice) refuse locally:
    # loopback addresses on a port where nothing listens.
    closed = free_port()
    docs = [
        "apiVersion: v1\nkind: Service\nmetadata: {name: flood, namespace: demo}\nspec:\n"
        "  ports: [{name: http, port: 80}]\n"
    ]
    for s in range(5):
        eps = "".join(f"  - addresses: [127.{s + 2}.{i // 250}.{i % 250 + 1}]\n" for i in range(1000))
        docs.append(
            f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: flood-{s}\n"
            "  namespace: demo\n  labels: {kubernetes.io/service-name: flood}\naddressType: IPv4\n"
            f"ports: [{{name: http, port: {closed}}}]\nendpoints:\n{eps}"
        )
    write(demo.folder / "flood.yaml", "---\n".join(docs))
    # Status says probing cannot keep up, on the slices' own lines ...
    status = wait_until(lambda: _status_with(demo, "endpoint probing is behind"))
    assert "flood.yaml:" in status
    # ... and, all the while, the real backend keeps its traffic: no 503.
    assert [get(demo.port) for _ in range(50)] == [(200, "primary")] * 50
    assert "ok, " not in demo.tsgw.status()
