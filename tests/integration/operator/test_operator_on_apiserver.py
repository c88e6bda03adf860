"""The operator (`tsgw.operator.Operator`, what `tsgw run` runs in a cluster) against a real
kube-apiserver and a real Envoy: informers → pipeline → snapshots by node cluster; the status
controller writes Accepted/ResolvedRefs/Programmed only when they change; the proxy-group
controller applies each group's objects once and prunes what a change removed; two namespaces
with the same object names get separate configurations."""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import orjson
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from grpclib.client import Channel, UnaryUnaryMethod

from tests.support.controlplane import ControlPlane
from tests.support.envoy import EnvoyFactory
from tsgw.api import API_VERSION, crds
from tsgw.extension import SERVICE, contexts, messages
from tsgw.kube import CUSTOMRESOURCEDEFINITIONS, NAMESPACES, Client, NotFound, RawObject, Resource
from tsgw.operator import Operator, OperatorOptions
from tsgw.providers import tsgw_resources
from tsgw.xds import bootstrap, group_token

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

KINDS = {r.kind: r for r in tsgw_resources()}
STATEFULSETS = Resource("apps/v1", "StatefulSet", "statefulsets")
SECRETS = Resource("v1", "Secret", "secrets")
CONFIGMAPS = Resource("v1", "ConfigMap", "configmaps")


async def _install_crds(client: Client) -> None:
    for crd in crds():
        await client.apply(CUSTOMRESOURCEDEFINITIONS, crd, field_manager="test")
    with anyio.fail_after(30):
        for r in KINDS.values():
            while True:
                try:
                    await client.list(r, "default")
                    break
                except NotFound:
                    await anyio.sleep(0.1)


def tailnet(name: str) -> RawObject:
    return {
        "apiVersion": API_VERSION,
        "kind": "TailscaleTailnet",
        "metadata": {"name": name},
        "spec": {
            "controlPlane": {"type": "Headscale", "apiURL": "http://127.0.0.1:1"},
            "credentials": {
                "secretRef": {"namespace": "tsgw-system", "name": "headscale"},
                "apiKey": {"key": "api_key"},
            },
        },
    }


def endpoints(ns: str, name: str, tailnet: str, address: str, replicas: int = 2) -> RawObject:
    return {
        "apiVersion": API_VERSION,
        "kind": "TailscaleEndpoints",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "tailnetRef": {"name": tailnet},
            "targets": [{"name": "db", "address": address, "ports": [{"port": 5432}]}],
            "proxy": {"replicas": replicas},
        },
    }


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[Client]:
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as c:
        await _install_crds(c)
        yield c


async def _namespace(client: Client, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


async def eventually(check: Callable[[], Any], what: str, deadline: float = 30) -> Any:
    """Poll an async or sync check until it returns something truthy (bounded)."""
    with anyio.fail_after(deadline):
        while True:
            value = check()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await anyio.sleep(0.1)
    raise AssertionError(what)  # unreachable; fail_after raises


async def settled(read: Callable[[], Any], what: str, window: float = 1.0, deadline: float = 30) -> Any:
    """Wait (bounded) until ``read()`` gives the same value at both ends of a ``window``-second
    interval, and return that value: the other actors have stopped writing (a write counted
    after its apply returned, a status change still queued) before a test marks a window in
    which it asserts that nothing more is written."""

    async def unchanged() -> tuple[Any] | None:
        before = read()
        await anyio.sleep(window)
        now = read()
        return (now,) if now == before else None

    (value,) = await eventually(unchanged, what, deadline)
    return value


def _condition(obj: RawObject, type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


async def test_the_operator_serves_each_namespace_its_own_group_writes_status_and_owns_the_proxies(
    client: Client, envoy_factory: EnvoyFactory
) -> None:
    a, b = await _namespace(client, "team-a"), await _namespace(client, "team-b")
    tn = f"tn-{uuid.uuid4().hex[:6]}"
    await client.create(KINDS["TailscaleTailnet"], tailnet(tn))
    await client.create(KINDS["TailscaleEndpoints"], endpoints(a, "db", tn, "100.64.0.1"))
    await client.create(KINDS["TailscaleEndpoints"], endpoints(b, "db", tn, "100.64.0.2"))
    operator = Operator(
        client,
        OperatorOptions(
            namespace=a,
            xds_address="127.0.0.1:0",
            admin_address="127.0.0.1:0",
            extension_address="127.0.0.1:0",
            health_probe_address="127.0.0.1:0",
            metrics_address=None,
            leader_election=False,
        ),
    )
    first_key: dict[str, int] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: watch_keys(client, a, first_key, task_status=task_status))
        await tg.start(operator.run)
        cache = operator.cache
        # Envoy Gateway's extension hook is served too: a TailscaleEndpoints backend becomes a
        # cluster to its egress Service (TCP port 5432, the only one).
        port = await eventually(lambda: operator.extension_port, "the extension server listens")
        channel = Channel("127.0.0.1", port)
        try:
            hook: UnaryUnaryMethod[Any, Any] = UnaryUnaryMethod(
                channel,
                f"/{SERVICE}/PostClusterModify",
                messages.PostClusterModifyRequest,
                messages.PostClusterModifyResponse,
            )
            resource = contexts.ExtensionResource(
                unstructured_bytes=orjson.dumps(endpoints(a, "db", tn, "100.64.0.1"))
            )
            with anyio.fail_after(10):
                answer = await hook(
                    messages.PostClusterModifyRequest(
                        cluster=cluster_pb2.Cluster(name=f"httproute/{a}/web/rule/0"),
                        post_cluster_context=contexts.PostClusterExtensionContext(
                            backend_extension_resources=[resource]
                        ),
                    )
                )
        finally:
            channel.close()
        sa = answer.cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
        assert (sa.address, sa.port_value) == (f"db.{a}.svc.cluster.local", 5432)
        # One snapshot per namespace: the node cluster carries it.
        await eventually(lambda: {f"db-tsep.{a}", f"db-tsep.{b}"} <= set(cache.groups()), "two snapshots")
        dump_a = cache.get_snapshot(f"db-tsep.{a}").to_dict()  # type: ignore[union-attr]
        dump_b = cache.get_snapshot(f"db-tsep.{b}").to_dict()  # type: ignore[union-attr]
        assert "100.64.0.1" in str(dump_a["types"])
        assert "100.64.0.2" not in str(dump_a["types"])
        assert "100.64.0.2" in str(dump_b["types"])
        assert "100.64.0.1" not in str(dump_b["types"])

        # The proxy-group controller applied each group's objects but the StatefulSet: no
        # replica's config has a key (this tailnet has no working client), and a pod started
        # without one would wait for the kubelet's next Secret sync to join.
        await eventually(lambda: _get(client, SECRETS, "db-tsep-1", a), "the state Secrets applied")
        await anyio.sleep(1.0)  # (a window for a premature StatefulSet, not a wait for an event)
        assert await _get(client, STATEFULSETS, "db-tsep", a) is None
        # Nor a config Secret without its key: it would be written again once the key is in.
        assert await _get(client, SECRETS, "db-tsep-0-config", a) is None
        # The keys arrive in the state Secrets (as the auth-key controller writes them): the
        # StatefulSet is applied after both config Secrets hold them, StatefulSet last.
        for ns in (a, b):
            await _give_keys(client, ns)
        sts = await eventually(lambda: _get(client, STATEFULSETS, "db-tsep", a), "the StatefulSet is applied")
        await _assert_keyed_before(sts, first_key)
        args = sts["spec"]["template"]["spec"]["containers"][1]["args"]
        assert args[args.index("--service-cluster") + 1] == f"db-tsep.{a}"
        assert await _get(client, SECRETS, "db-tsep-1", a) is not None

        # Status: accepted, resolved, and not programmed while no Envoy is connected.
        async def no_proxies() -> RawObject | None:
            obj = await client.get(KINDS["TailscaleEndpoints"], "db", a)
            c = _condition(obj, "Programmed")
            return obj if c is not None and c["reason"] == "NoProxies" else None

        obj = await eventually(no_proxies, "Programmed=False NoProxies")
        assert _condition(obj, "Accepted")["status"] == "True"  # type: ignore[index]
        assert _condition(obj, "ResolvedRefs")["status"] == "True"  # type: ignore[index]

        # A steady state writes nothing more (once both groups are applied: StatefulSet last).
        await eventually(lambda: _get(client, STATEFULSETS, "db-tsep", b), "team-b's StatefulSet")
        await eventually(lambda: _status_written(client, b), "team-b's status written")
        pg = operator.proxygroups["TailscaleEndpoints"].reconciler
        st = operator.status["TailscaleEndpoints"].reconciler

        # (Counted for this test's namespaces: the session's API server holds other tests' objects.)
        def ours() -> tuple[int, ...]:
            return tuple(r.writes_by_namespace[n] for r in (pg, st) for n in (a, b))  # type: ignore[attr-defined]

        # The counts stop moving first (the write that made team-b's status visible may be
        # counted after the GET saw it; a later status change may still be queued), then a
        # translation with nothing changed must not write.
        writes = await settled(ours, "the write counts settle")
        operator.provider.mark()  # type: ignore[union-attr]
        await anyio.sleep(1.0)  # (a window for spurious writes, not a wait for an event)
        assert ours() == writes

        # The xDS server authenticates: the key Secret exists, and each group's bootstrap (a
        # Secret, mounted by its pods) carries that group's token and no other's.
        key_secret = await client.get(SECRETS, "tsgw-xds-auth", a)
        key = base64.b64decode(key_secret["data"]["key"])
        token = group_token(key, f"db-tsep.{a}")
        boot = await client.get(SECRETS, "db-tsep-envoy", a)
        assert token in base64.b64decode(boot["data"]["envoy.json"]).decode()
        assert await _get(client, CONFIGMAPS, "db-tsep-envoy", a) is None
        other = await client.get(SECRETS, "db-tsep-envoy", b)
        assert token not in base64.b64decode(other["data"]["envoy.json"]).decode()

        # A real Envoy of team-a's group: Programmed becomes True on the API server.
        envoy = envoy_factory(
            bootstrap(
                "db-tsep-0", f"db-tsep.{a}", f"127.0.0.1:{operator.xds_port}", admin_port=0, token=token
            ),
            start=False,
        )
        await envoy.astart()

        async def programmed() -> bool:
            c = _condition(await client.get(KINDS["TailscaleEndpoints"], "db", a), "Programmed")
            return c is not None and c["status"] == "True"

        await eventually(programmed, "Programmed=True once the Envoy ACKed")
        c_b = _condition(await client.get(KINDS["TailscaleEndpoints"], "db", b), "Programmed")
        assert c_b is not None
        assert c_b["reason"] == "NoProxies"  # team-b's Envoys are not team-a's

        # Scale team-b to one replica: its second replica's Secrets are pruned.
        obj_b = copy.deepcopy(dict(await client.get(KINDS["TailscaleEndpoints"], "db", b)))
        obj_b["spec"]["proxy"]["replicas"] = 1
        await client.replace(KINDS["TailscaleEndpoints"], obj_b)

        async def pruned() -> bool:
            return await _get(client, SECRETS, "db-tsep-1", b) is None and (
                await _get(client, SECRETS, "db-tsep-1-config", b) is None
            )

        # (The test's keys leave team-b's state Secrets first, as after registration: a key
        # still there would be revoked before the Secret goes, and this tailnet has no client.)
        await _give_keys(client, b, value=None)
        await eventually(pruned, "replica 1's Secrets pruned")
        assert await _get(client, SECRETS, "db-tsep-1", a) is not None  # team-a keeps both

        # Deleting team-b's object clears its snapshot; team-a's Envoy keeps its configuration.
        await client.delete(KINDS["TailscaleEndpoints"], "db", b)
        await eventually(lambda: f"db-tsep.{b}" not in cache.groups(), "team-b's snapshot cleared")
        assert f"db-tsep.{a}" in cache.groups()
        assert await programmed()
        operator.manager.stop()
        tg.cancel_scope.cancel()


async def _give_keys(client: Client, namespace: str, replicas: int = 2, value: str | None = "key") -> None:
    """Each replica's key into its state Secret, as the auth-key controller writes it (None:
    removed)."""
    from tsgw.controllers import AUTHKEY_FIELD

    for i in range(replicas):
        key = base64.b64encode(f"hskey-auth-test-{i}".encode()).decode() if value is not None else None
        await client.patch(
            SECRETS, f"db-tsep-{i}", {"data": {AUTHKEY_FIELD: key}}, namespace=namespace, field_manager="test"
        )


async def watch_keys(client: Client, namespace: str, first: dict[str, int], *, task_status: Any) -> None:
    """Follow the namespace's Secrets from now on; ``first[name]`` is the revision at which
    config Secret ``name`` first held an ``AuthKey`` (every version is seen, in order), and
    ``first["versions:" + name]`` how many versions it had."""
    async with client.watch(SECRETS, namespace) as events:
        task_status.started()
        async for ev in events:
            md = ev.object.get("metadata") or {}
            name = str(md.get("name") or "")
            if ev.type not in ("ADDED", "MODIFIED") or not name.endswith("-config"):
                continue
            first[f"versions:{name}"] = first.get(f"versions:{name}", 0) + 1
            text = "".join(base64.b64decode(v).decode() for v in (ev.object.get("data") or {}).values())
            if '"AuthKey"' in text:
                first.setdefault(name, int(md["resourceVersion"]))


async def _assert_keyed_before(sts: RawObject, first: dict[str, int], replicas: int = 2) -> None:
    """Every replica's config Secret held its key before the StatefulSet was created, in the
    API server's (one etcd's) revision order (generation 1 and no controller running here: the
    StatefulSet's resourceVersion is its creation's)."""
    assert sts["metadata"]["generation"] == 1
    created = int(sts["metadata"]["resourceVersion"])
    # ``first`` is filled by a watch (served from the API server's watch cache), ``sts`` came
    # from a quorum GET: the keyed versions, written before the StatefulSet, may not have
    # been delivered yet. Wait for them; the order is then judged by resourceVersion.
    await eventually(
        lambda: all(f"db-tsep-{i}-config" in first for i in range(replicas)),
        "the watch delivers every config Secret's keyed version",
    )
    for i in range(replicas):
        keyed = first.get(f"db-tsep-{i}-config")
        assert keyed is not None, (i, first)
        assert keyed < created, (i, first, sts["metadata"])
        # Written once: created with its key (not first without it, then again with it).
        assert first[f"versions:db-tsep-{i}-config"] == 1, first


async def _status_written(client: Client, namespace: str) -> bool:
    return (
        _condition(await client.get(KINDS["TailscaleEndpoints"], "db", namespace), "Programmed") is not None
    )


async def _get(client: Client, resource: Resource, name: str, namespace: str) -> RawObject | None:
    try:
        return await client.get(resource, name, namespace)
    except NotFound:
        return None
