"""`tsgw status --cluster` on crafted facts: the view's document and its tables."""

from __future__ import annotations

import dataclasses
import io

from tests.unit.cli import _install_facts as inst
from tsgw.cli import _cluster, _clusterview
from tsgw.cli._clusterview import cluster_status, render


def test_surfaces_are_curated() -> None:
    assert _cluster.__all__ == [
        "LEASE_NAME",
        "PODS",
        "PROXY_SELECTOR",
        "STATEFULSETS",
        "ClusterFacts",
        "Device",
        "gather",
    ]
    assert _clusterview.__all__ == [
        "OWNING_KINDS",
        "cluster_status",
        "conditions",
        "envoys",
        "last_error",
        "render",
    ]


def test_healthy_install_one_table_per_tailnet() -> None:
    doc = cluster_status(inst.healthy())
    assert doc["operator"] == {"leader": "tsgw-abc", "replicas": [{"pod": "tsgw-abc", "ready": True}]}
    [tn] = doc["tailnets"]
    assert tn["name"] == "ts"
    assert tn["ready"]["status"] == "True"
    assert tn["devices"] == 2
    [g] = tn["groups"]
    assert g["owner"] == "TailscaleServices/demo/web"
    assert (g["group"], g["nodeCluster"], g["replicas"], g["readyReplicas"]) == (
        "web-tssvc",
        "web-tssvc.demo",
        2,
        2,
    )
    assert g["service"] == "svc:web"
    assert g["lastError"] == ""
    assert [(p["pod"], p["device"], p["online"], p["envoy"]) for p in g["proxies"]] == [
        ("web-tssvc-0", "web-tssvc-0.tail1234.ts.net", True, "SYNCED"),
        ("web-tssvc-1", "web-tssvc-1.tail1234.ts.net", True, "SYNCED"),
    ]
    assert tn["services"] == [
        {"name": "svc:web", "addresses": ["100.100.1.1"], "claimedBy": ["TailscaleServices/demo/web"]}
    ]
    assert doc["errors"] == []
    assert doc["unread"] == []
    out = io.StringIO()
    render(doc, out)
    text = out.getvalue()
    assert "tailnet ts: Ready=True Ready, tail1234.ts.net, 2 devices known" in text
    assert "demo/web-tssvc  TailscaleServices/web  2/2" in text
    assert "svc:web" in text
    assert "web-tssvc-1.tail1234.ts.net" in text


def test_nack_shows_per_envoy_and_as_the_objects_last_error() -> None:
    doc = cluster_status(inst.nacked(inst.healthy()))
    [g] = doc["tailnets"][0]["groups"]
    p0, p1 = g["proxies"]
    assert p0["envoy"] == "SYNCED"
    assert p1["envoy"] == "NACKED"
    assert "Address in use" in p1["nack"]
    assert p1["nack"].startswith("lds version v4")
    assert g["lastError"].startswith("Programmed Rejected: Envoy 'web-tssvc-1'")
    assert doc["errors"] == [{"object": "TailscaleServices/demo/web", "error": g["lastError"]}]
    out = io.StringIO()
    render(doc, out)
    assert "NACKED" in out.getvalue()
    assert "last error per object:" in out.getvalue()


def test_stopped_proxy_missing_offline_disconnected() -> None:
    doc = cluster_status(inst.stopped_proxy(inst.healthy()))
    p1 = doc["tailnets"][0]["groups"][0]["proxies"][1]
    assert (p1["phase"], p1["ready"], p1["online"], p1["envoy"]) == ("Missing", False, False, "DISCONNECTED")


def test_an_envoy_reported_by_two_replicas_counts_once_rejected_first() -> None:
    f = inst.nacked(inst.healthy())
    both = {
        **f.xds_reports,
        "tsgw-def": {"web-tssvc.demo": ("f0", (inst.NodeSync(0, "web-tssvc-1", inst.Sync.SYNCED),))},
    }
    nodes = _clusterview.envoys(dataclasses.replace(f, xds_reports=both))
    assert nodes["web-tssvc.demo/web-tssvc-1"]["state"] == "NACKED"


def test_owner_naming_a_missing_tailnet_gets_its_own_section() -> None:
    f = inst.healthy()
    doc = cluster_status(dataclasses.replace(f, objects=f.objects[1:], tailnet_facts={}))
    [tn] = doc["tailnets"]
    assert tn["exists"] is False
    assert tn["ready"]["reason"] == "NotFound"
    assert tn["groups"][0]["proxies"][0]["online"] is None


def test_device_read_from_a_state_secret_keeps_nothing_else() -> None:
    secret = {
        "data": {
            "device_id": inst.b64("n123"),
            "device_fqdn": inst.b64("web-tssvc-0.tail1234.ts.net."),
            "device_ips": inst.b64('["100.64.0.1","fd7a::1"]'),
            "_machinekey": inst.b64("privkey:secret"),
        }
    }
    assert _cluster.device_of(secret) == _cluster.Device(
        "n123", "web-tssvc-0.tail1234.ts.net", ("100.64.0.1", "fd7a::1")
    )
    assert _cluster.device_of({"data": {"_machinekey": inst.b64("x")}}) is None
    assert _cluster.device_of(
        {"data": {"device_id": "not base64!", "device_fqdn": inst.b64("a.b")}}
    ) == _cluster.Device("", "a.b", ())


def test_a_device_is_matched_by_address_or_by_headscales_given_name() -> None:
    f = inst.healthy()
    facts = {
        "ts": {"devices": [["web-tssvc-0", ["100.64.0.9"], [], "", 0], ["other", ["100.64.0.2"], [], "", 1]]}
    }
    doc = cluster_status(dataclasses.replace(f, tailnet_facts=facts))
    p0, p1 = doc["tailnets"][0]["groups"][0]["proxies"]
    assert p0["online"] is False  # by its given name (Headscale)
    assert p1["online"] is True  # by its address, whatever the name
