"""`tsgw status` and `tsgw snapshot list|dump|diff|watch` against a running admin API, with a real
Envoy connected to the xDS server."""

from __future__ import annotations

import contextlib
import json
import re

import anyio
import anyio.to_thread
import pytest
import yaml
from grpclib.exceptions import GRPCError, StreamTerminatedError

from tests.support.backend import HttpBackend
from tests.support.envoy import EnvoyFactory
from tests.support.process import free_port
from tests.support.xds import eventually, proxy_snapshot, running_ads, type_status
from tsgw.admin import AdminClient, AdminNotFoundError, AdminService
from tsgw.cli import main
from tsgw.cli._admin import type_state
from tsgw.xds import (
    ClusterDiscovery,
    EndpointDiscovery,
    ListenerDiscovery,
    RouteDiscovery,
    Snapshot,
    SnapshotCache,
    bootstrap,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
GROUP = "proxies"
_SHORT = {ClusterDiscovery: "cds", EndpointDiscovery: "eds", ListenerDiscovery: "lds", RouteDiscovery: "rds"}
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:")  # structlog's console lines from the in-process server


async def tsgw(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the CLI in a thread (it runs its own event loop); its stdout, without server log lines."""
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, list(argv))
    captured = capsys.readouterr()
    out = "".join(ln for ln in captured.out.splitlines(keepends=True) if not _LOG_LINE.match(ln))
    if captured.err:
        out += "STDERR: " + captured.err
    return code, out


async def test_status_and_snapshot_commands_show_what_envoy_holds(
    envoy_factory: EnvoyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = SnapshotCache()
    with HttpBackend("web") as backend:
        lport = free_port()
        cache.set_snapshot(GROUP, proxy_snapshot(lport, {"a": [backend.port]}, {"/": "a"}, version="v1"))
        async with running_ads(cache) as (ads, xds_port), anyio.create_task_group() as tg:
            admin_port = await tg.start(AdminService(cache, ads).serve, "127.0.0.1", 0)
            admin = f"127.0.0.1:{admin_port}"
            envoy = envoy_factory(
                bootstrap("envoy-0", GROUP, f"127.0.0.1:{xds_port}", admin_port=0), start=False
            )
            await envoy.astart()
            await eventually(lambda: _all_synced(admin), "every type SYNCED")

            code, out = await tsgw(capsys, "status", "--admin", admin)
            assert code == 0
            header, row = out.splitlines()[:2]
            assert header.split() == ["NODE", "CLUSTER", "VARIANT", "AGE", "CDS", "EDS", "LDS", "RDS"]
            assert row.split()[:3] == ["envoy-0", GROUP, "sotw"]
            assert row.split()[4:] == ["SYNCED"] * 4

            # A config Envoy rejects shows as NACKED with Envoy's error text.
            bad = proxy_snapshot(
                lport,
                {"a": [backend.port]},
                {"/": "a"},
                version="v2",
                cluster_extra={"a": {"connect_timeout": "-1s"}},
            )
            cache.set_snapshot(GROUP, bad)
            await eventually(lambda: _nacked(ads), "NACK recorded")
            code, out = await tsgw(capsys, "status", "--admin", admin)
            assert "NACKED" in out.splitlines()[1]
            assert f"envoy-0 cds: NACK of version {bad.type_version(ClusterDiscovery)}" in out
            assert "Expected positive duration" in out

            code, out = await tsgw(capsys, "status", "--admin", admin, "-o", "json")
            (node,) = json.loads(out)
            assert node["node_id"] == "envoy-0"

            code, out = await tsgw(capsys, "snapshot", "list", "--admin", admin)
            lines = out.splitlines()
            assert lines[0].split()[:4] == ["GROUP", "GEN", "VERSION", "CREATED"]
            assert [ln.split()[2] for ln in lines[1:]] == ["v1", "v2"]
            assert lines[2].split()[3] == "*"  # current

            code, out = await tsgw(
                capsys, "snapshot", "dump", "--admin", admin, "--group", GROUP, "--version", "v1"
            )
            doc = yaml.safe_load(out)
            assert doc["version"] == "v1"
            assert doc["types"]["cds"]["resources"]["a"]["connect_timeout"] == "1s"

            code, out = await tsgw(capsys, "snapshot", "diff", "--admin", admin, "--group", GROUP, "v1", "v2")
            assert code == 0
            assert out.splitlines()[0] == "cds: +0 -0 ~1"
            assert "~ cds/a" in out
            assert "-connect_timeout: 1s" in out.replace("    ", "")
            assert "+connect_timeout: -1s" in out.replace("    ", "")

            code, out = await tsgw(capsys, "snapshot", "dump", "--admin", admin, "--group", "nope")
            assert code == 1
            assert "STDERR: tsgw: no snapshot for group 'nope'" in out

            tg.cancel_scope.cancel()


async def test_status_reads_each_type_against_the_current_snapshot_through_fixes_and_restarts(
    envoy_factory: EnvoyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tsgw status` does not mislead (issue 17 item 6): a fixed snapshot after a NACK reads
    SYNCED with no NACK line; re-applying the rejected content reads NACKED again, not SYNCED;
    and after the xDS server restarts with the same content, an Envoy that reconnects holding it
    reads SYNCED although nothing was sent on the new stream (not NOT SENT)."""
    with HttpBackend("web") as backend:
        lport = free_port()

        def snap(version: str, timeout: str) -> Snapshot:
            extra = {"a": {"connect_timeout": timeout}}
            return proxy_snapshot(
                lport, {"a": [backend.port]}, {"/": "a"}, version=version, cluster_extra=extra
            )

        good, bad, fixed = snap("v1", "1s"), snap("v2", "-1s"), snap("v3", "2s")
        cache = SnapshotCache()
        cache.set_snapshot(GROUP, good)
        xds_port = free_port()
        async with running_ads(cache, xds_port) as (ads, _), anyio.create_task_group() as tg:
            admin = f"127.0.0.1:{await tg.start(AdminService(cache, ads).serve, '127.0.0.1', 0)}"
            envoy = envoy_factory(
                bootstrap("envoy-0", GROUP, f"127.0.0.1:{xds_port}", admin_port=0), start=False
            )
            await envoy.astart()
            await _states_become(admin, {"cds": "SYNCED", "eds": "SYNCED", "lds": "SYNCED", "rds": "SYNCED"})

            cache.set_snapshot(GROUP, bad)
            await _states_become(admin, {"cds": "NACKED"})
            code, out = await tsgw(capsys, "status", "--admin", admin)
            assert _row(out)["cds"] == "NACKED"
            assert "envoy-0 cds: NACK of version" in out

            # (a) A fixed snapshot: SYNCED once Envoy ACKs, and the NACK line is gone.
            cache.set_snapshot(GROUP, fixed)
            await _states_become(admin, {"cds": "SYNCED"})
            code, out = await tsgw(capsys, "status", "--admin", admin)
            assert code == 0
            assert _row(out) == {"cds": "SYNCED", "eds": "SYNCED", "lds": "SYNCED", "rds": "SYNCED"}
            assert "NACK" not in out

            # (b) The rejected content again: the server does not send it again, and status says
            # NACKED (Envoy holds an older version), not SYNCED.
            again = snap("v4", "-1s")
            assert again.type_version(ClusterDiscovery) == bad.type_version(ClusterDiscovery)
            cache.set_snapshot(GROUP, again)
            code, out = await tsgw(capsys, "status", "--admin", admin)
            assert _row(out)["cds"] == "NACKED"
            assert f"envoy-0 cds: NACK of version {bad.type_version(ClusterDiscovery)}" in out
            assert "Expected positive duration" in out

            # Back to the content Envoy holds: SYNCED at once, nothing to send.
            cache.set_snapshot(GROUP, snap("v5", "2s"))
            code, out = await tsgw(capsys, "status", "--admin", admin)
            assert _row(out) == {"cds": "SYNCED", "eds": "SYNCED", "lds": "SYNCED", "rds": "SYNCED"}
            tg.cancel_scope.cancel()

        # (c) A new server (a restarted process) on the same port with the same content.
        restarted = SnapshotCache()
        restarted.set_snapshot(GROUP, snap("v5", "2s"))
        async with running_ads(restarted, xds_port) as (ads, _), anyio.create_task_group() as tg:
            admin = f"127.0.0.1:{await tg.start(AdminService(restarted, ads).serve, '127.0.0.1', 0)}"
            await _states_become(admin, {"cds": "SYNCED", "eds": "SYNCED", "lds": "SYNCED", "rds": "SYNCED"})
            code, out = await tsgw(capsys, "status", "--admin", admin)
            assert code == 0
            assert _row(out) == {"cds": "SYNCED", "eds": "SYNCED", "lds": "SYNCED", "rds": "SYNCED"}
            assert "NOT SENT" not in out
            # No CDS or LDS was sent on the new stream (the content is unchanged): SYNCED comes from
            # the version Envoy said it holds. (Named EDS and RDS subscriptions are answered.)
            (stream,) = ads.streams()
            wildcard = {t.type_url: (t.sent_version, t.pushes) for t in stream.types if t.wildcard}
            assert wildcard == {ClusterDiscovery: (None, 0), ListenerDiscovery: (None, 0)}
            tg.cancel_scope.cancel()


async def test_snapshot_watch_prints_the_current_then_each_new_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, proxy_snapshot(1, {"a": [2]}, {"/": "a"}, version="first"))
    async with anyio.create_task_group() as tg:
        port = await tg.start(AdminService(cache).serve, "127.0.0.1", 0)
        result: list[tuple[int, str]] = []

        async def watch() -> None:
            result.append(
                await tsgw(capsys, "snapshot", "watch", "--admin", f"127.0.0.1:{port}", "--count", "2")
            )

        async with anyio.create_task_group() as inner:
            inner.start_soon(watch)
            # Change the snapshot only once the CLI's watch is registered, however slow it starts.
            with anyio.fail_after(30):
                while not cache._any_watchers:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            cache.set_snapshot(GROUP, proxy_snapshot(1, {"a": [3]}, {"/": "a"}, version="second"))
        tg.cancel_scope.cancel()
    ((code, out),) = result
    assert code == 0
    first, second = out.splitlines()
    assert "gen=1 version=first cds=1 eds=1 lds=1 rds=1" in first
    assert "gen=2 version=second" in second


async def test_admin_client_reports_unknown_versions_as_not_found() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, proxy_snapshot(1, {"a": [2]}, {"/": "a"}, version="v1"))
    async with anyio.create_task_group() as tg:
        port = await tg.start(AdminService(cache).serve, "127.0.0.1", 0)
        async with AdminClient(f"127.0.0.1:{port}") as client:
            with pytest.raises(AdminNotFoundError, match="no stored snapshot 'v9'"):
                await client.get_snapshot(GROUP, "v9")
            assert await client.list_nodes() == []
        tg.cancel_scope.cancel()


async def _all_synced(admin: str) -> bool:
    async with AdminClient(admin) as c:
        nodes = await c.list_nodes()
    return (
        len(nodes) == 1
        and len(nodes[0].types) == 4
        and all(t.sent_version and t.acked_version == t.sent_version for t in nodes[0].types)
    )


async def _nacked(ads: object) -> bool:
    return type_status(ads, ClusterDiscovery).nack is not None  # type: ignore[arg-type]


async def _states_become(admin: str, want: dict[str, str], wait_s: float = 20.0) -> None:
    """Wait until the one node's types read ``want`` (as `tsgw status` names them)."""
    last: dict[str, str] = {}
    with anyio.fail_after(wait_s):
        while True:
            with contextlib.suppress(OSError, GRPCError, StreamTerminatedError):
                async with AdminClient(admin) as c:
                    nodes = await c.list_nodes()
                if len(nodes) == 1:
                    last = {_SHORT[t.type_url]: type_state(t) for t in nodes[0].types}
                    if all(last.get(k) == v for k, v in want.items()):
                        return
            await anyio.sleep(0.05)


def _row(out: str) -> dict[str, str]:
    """The first node row of `tsgw status`: its CDS, EDS, LDS and RDS columns."""
    header, row = [ln for ln in out.splitlines() if ln.startswith(("NODE", "envoy-"))][:2]
    cells = re.split(r"\s{2,}", row.strip())
    assert header.split()[-4:] == ["CDS", "EDS", "LDS", "RDS"]
    return dict(zip(["cds", "eds", "lds", "rds"], cells[-4:], strict=True))
