"""`tsgw doctor`'s checks on crafted facts: each failure is named, with what to fix."""

from __future__ import annotations

import copy
import dataclasses

from tests.unit.cli import _install_facts as inst
from tsgw.cli import _doctor
from tsgw.cli._doctor import DoctorOptions, Finding, Level, diagnose, exit_code, format_finding


def _bad(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.check, f.level.value, f.subject) for f in findings if f.level is not Level.OK]


def test_surface_is_curated() -> None:
    assert _doctor.__all__ == [
        "CHECKS",
        "DoctorOptions",
        "Finding",
        "Level",
        "diagnose",
        "exit_code",
        "format_finding",
    ]
    assert [name for name, _ in _doctor.CHECKS] == [
        "access",
        "crds",
        "operator",
        "credentials",
        "objects",
        "proxies",
        "envoys",
        "clock",
    ]


def test_healthy_install_every_check_ok() -> None:
    findings = diagnose(inst.healthy())
    assert _bad(findings) == []
    assert [f.check for f in findings] == [name for name, _ in _doctor.CHECKS]
    assert exit_code(findings) == 0
    assert format_finding(findings[-1]).startswith("OK   clock       this machine: within 5 s")


def test_wrong_credentials_and_a_stopped_proxy_each_named() -> None:
    findings = diagnose(inst.stopped_proxy(inst.wrong_credentials(inst.healthy())))
    assert _bad(findings) == [
        ("credentials", "fail", "TailscaleTailnet/ts"),
        ("proxies", "fail", "demo/web-tssvc-1"),
    ]
    cred = next(f for f in findings if f.check == "credentials")
    assert "AuthFailed" in cred.message
    assert "Secret tsgw-system/ts-creds" in cred.fix
    proxy = next(f for f in findings if f.check == "proxies")
    assert proxy.message == "proxy pod missing"
    assert exit_code(findings) == 1
    line = format_finding(cred)
    assert line.startswith("FAIL credentials TailscaleTailnet/ts: Ready=False AuthFailed: 401")
    assert " -> " in line


def test_a_running_proxy_offline_and_disconnected() -> None:
    f = inst.stopped_proxy(inst.healthy())
    f = dataclasses.replace(f, pods=(*f.pods, inst.pod("web-tssvc-1", ready=False)))
    findings = diagnose(f)
    assert _bad(findings) == [
        ("proxies", "fail", "demo/web-tssvc-1"),
        ("proxies", "fail", "demo/web-tssvc-1"),
        ("envoys", "fail", "demo/web-tssvc-1"),
    ]
    msgs = [x.message for x in findings if x.level is Level.FAIL]
    assert msgs[0] == "proxy pod not Ready: envoy not ready (CrashLoopBackOff)"
    assert msgs[1] == "device web-tssvc-1.tail1234.ts.net is offline on the tailnet"
    assert msgs[2] == "its Envoy is connected to no operator replica"


def test_nack_names_the_envoy_once() -> None:
    findings = diagnose(inst.nacked(inst.healthy()))
    assert _bad(findings) == [("envoys", "fail", "demo/web-tssvc-1")]
    [nack] = [x for x in findings if x.level is Level.FAIL]
    assert "Envoy rejected lds version v4: cannot bind" in nack.message
    assert "TailscaleServices/demo/web" in nack.fix


def test_programmed_speaks_when_the_reports_are_silent() -> None:
    f = inst.nacked(inst.healthy())
    findings = diagnose(dataclasses.replace(f, xds_reports={}))
    assert ("envoys", "fail", "TailscaleServices/demo/web") in _bad(findings)
    assert ("envoys", "warn", "namespace tsgw-system") in _bad(findings)


def test_crds_missing_stale_and_unserved() -> None:
    f = inst.healthy()
    crds = copy.deepcopy(dict(f.crds))
    del crds["tailscaleendpoints.gateway.tailscale.com"]
    crds["tailscaletailnets.gateway.tailscale.com"]["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {}}
    crds["tailscaleservices.gateway.tailscale.com"]["spec"]["versions"][0]["served"] = False
    findings = [x for x in diagnose(dataclasses.replace(f, crds=crds)) if x.check == "crds"]
    assert [(x.level.value, x.subject) for x in findings] == [
        ("warn", "tailscaletailnets.gateway.tailscale.com"),
        ("fail", "tailscaleendpoints.gateway.tailscale.com"),
        ("fail", "tailscaleservices.gateway.tailscale.com"),
    ]
    assert all("tsgw crds | kubectl apply" in x.fix for x in findings)


def test_no_leader_and_a_stale_lease() -> None:
    f = inst.healthy()
    none = [x for x in diagnose(dataclasses.replace(f, lease=None)) if x.level is Level.FAIL]
    assert [(x.check, x.subject) for x in none] == [("operator", "Lease tsgw-system/tsgw-operator")]
    stale = {
        "spec": {
            "holderIdentity": "tsgw-abc",
            "leaseDurationSeconds": 15,
            "renewTime": "2027-01-15T07:59:00Z",
        }
    }
    [old] = [x for x in diagnose(dataclasses.replace(f, lease=stale)) if x.level is Level.FAIL]
    assert old.message == "held by tsgw-abc but not renewed for 60 s (lease 15 s)"


def test_clock_skew_and_unread_clock() -> None:
    f = inst.healthy()
    [skew] = [x for x in diagnose(dataclasses.replace(f, local_time=inst.NOW - 42)) if x.check == "clock"]
    assert (skew.level, skew.message) == (Level.FAIL, "clock behind the API server's by 42 s")
    lenient = diagnose(dataclasses.replace(f, local_time=inst.NOW - 42), DoctorOptions(max_clock_skew=60))
    assert exit_code(lenient) == 0
    [unread] = [x for x in diagnose(dataclasses.replace(f, server_time=None)) if x.check == "clock"]
    assert unread.level is Level.WARN


def test_refused_reads_and_rejected_spec() -> None:
    f = inst.healthy()
    bad_web = inst.web()
    bad_web["status"]["conditions"][0] = inst._cond(
        "Accepted", False, "InvalidName", "name is not a DNS label"
    )
    findings = diagnose(
        dataclasses.replace(f, objects=(f.objects[0], bad_web), unread=("proxy state Secrets: 403",))
    )
    assert ("access", "warn", "cluster") in _bad(findings)
    assert ("objects", "fail", "TailscaleServices/demo/web") in _bad(findings)


def test_owner_of_an_unknown_tailnet() -> None:
    f = inst.healthy()
    findings = diagnose(dataclasses.replace(f, objects=f.objects[1:]))
    assert ("credentials", "fail", "TailscaleServices/demo/web") in _bad(findings)
