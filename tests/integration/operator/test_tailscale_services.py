"""The operator's Tailscale Services controller against a real kube-apiserver and the tailnet in
a box (the hosted-API fake bound to ``tsgw-testcontrol``, which allocates the VIPs):

- a TailscaleServices object gets a finalizer, then ``svc:<name>`` is created through the API
  with its ports, tags and this cluster's owner claim, and the object's
  ``TailscaleServiceReady`` condition shows the VIPs the box allocated;
- a ``svc:`` that exists and that tsgw did not make is never touched: a Warning Event says so;
- renaming the service releases the old one (deleted: it was the last claim) and claims the new;
- deleting the object deletes its service before the finalizer lets the object go;
- another cluster's service defined differently is a condition and an Event on this cluster's
  object, never an overwrite; agreeing shares it; deleting releases only this cluster's claim.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from tests.integration.operator.test_operator_on_apiserver import (
    KINDS,
    _condition,
    _get,
    _install_crds,
    _namespace,
    eventually,
)
from tests.support.boxed_fake import BoxedTailnet
from tests.support.controlplane import ControlPlane
from tsgw.api import API_VERSION
from tsgw.controllers import SERVICE_CLAIMED, SERVICE_FINALIZER
from tsgw.kube import EVENTS, SECRETS, Client
from tsgw.operator import Operator, OperatorOptions
from tsgw.tailscale import NotFoundError, OwnerRef, TailscaleService, owners_of, plan_claim

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CLUSTER = "it-cluster"


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[Client]:
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as c:
        await _install_crds(c)
        yield c


def _services(ns: str, name: str, tailnet: str, service_name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "TailscaleServices",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "tailnetRef": {"name": tailnet},
            "serviceName": service_name,
            "ports": [{"port": 80, "protocol": "HTTP"}],
            "backends": [{"service": "web"}],
            "tags": ["tag:k8s"],
            "proxy": {"replicas": 1},
        },
    }


async def test_a_tailscale_service_is_claimed_renamed_refused_when_foreign_and_released(
    client: Client, tailnet_box: BoxedTailnet
) -> None:
    tn = tailnet_box
    ops = await _namespace(client, "tsgw-system")
    apps = await _namespace(client, "apps")
    name = f"box-{uuid.uuid4().hex[:6]}"
    await client.apply(
        SECRETS,
        {
            "metadata": {"name": "oauth", "namespace": ops},
            "stringData": {"client_id": tn.oauth_client_id, "client_secret": tn.oauth_client_secret},
        },
        field_manager="test",
    )
    await client.create(
        KINDS["TailscaleTailnet"],
        {
            "apiVersion": API_VERSION,
            "kind": "TailscaleTailnet",
            "metadata": {"name": name},
            "spec": {
                "controlPlane": {"type": "Tailscale", "apiURL": tn.api_url, "loginURL": tn.box.url},
                "credentials": {"secretRef": {"namespace": ops, "name": "oauth"}, "oauth": {}},
                "tags": ["tag:k8s"],
            },
        },
    )
    # Someone else's service, made by hand (no tsgw owner annotation).
    foreign = tn.call(tn.user_ts.put_service, TailscaleService("svc:taken", ports=("tcp:443",)))
    await client.create(KINDS["TailscaleServices"], _services(apps, "web", name, "web"))
    operator = Operator(
        client,
        OperatorOptions(
            namespace=ops,
            xds_address="127.0.0.1:0",
            admin_address="127.0.0.1:0",
            health_probe_address="127.0.0.1:0",
            metrics_address=None,
            leader_election=False,
            tailnet_poll_interval=1.0,
            cluster_id=CLUSTER,
        ),
    )

    def service(svc: str) -> TailscaleService | None:
        try:
            return tn.call(tn.ts.get_service, svc)
        except NotFoundError:
            return None

    async def ready(obj: str, svc: str) -> dict[str, Any] | None:
        c = _condition(await client.get(KINDS["TailscaleServices"], obj, apps), "TailscaleServiceReady")
        return c if c is not None and c["status"] == "True" and svc in c["message"] else None

    async with anyio.create_task_group() as tg:
        await tg.start(operator.run)

        web = await eventually(lambda: anyio.to_thread.run_sync(service, "svc:web"), "svc:web created")
        assert web.ports == ("tcp:80",)
        assert web.tags == ("tag:k8s",)
        (owner,) = owners_of(web) or ()
        assert (owner.operator_id, owner.kind, owner.namespace, owner.name) == (
            CLUSTER,
            "TailscaleServices",
            apps,
            "web",
        )
        assert web.addrs, "the box allocated VIPs"
        obj = await client.get(KINDS["TailscaleServices"], "web", apps)
        assert SERVICE_FINALIZER in obj["metadata"]["finalizers"]
        cond = await eventually(lambda: ready("web", "svc:web"), "TailscaleServiceReady True")
        assert web.addrs[0] in cond["message"]

        # A service tsgw did not make: left exactly as it was, and an Event says why.
        await client.create(KINDS["TailscaleServices"], _services(apps, "taken", name, "taken"))

        async def refused() -> bool:
            events = (await client.list(EVENTS, namespace=apps)).items
            return any(
                e.get("reason") == "TailscaleServiceForeign"
                and (e.get("regarding") or {}).get("name") == "taken"
                for e in events
            )

        await eventually(refused, "a TailscaleServiceForeign Event on 'taken'")
        assert service("svc:taken") == foreign

        # The condition comes from translation of the facts (written by the status controller),
        # the Event from the services controller: neither waits for the other.
        async def not_claimed() -> dict[str, Any] | None:
            c = _condition(
                await client.get(KINDS["TailscaleServices"], "taken", apps), "TailscaleServiceReady"
            )
            assert c is None or c["status"] == "False", c  # never ready on a foreign service
            return c if c is not None and c["reason"] == "NotClaimed" else None

        await eventually(not_claimed, "TailscaleServiceReady=False, NotClaimed on 'taken'")

        # Renamed: the old service (this object its only owner) goes, the new one comes.
        await client.patch(
            KINDS["TailscaleServices"], "web", {"spec": {"serviceName": "web2"}}, namespace=apps
        )
        await eventually(lambda: anyio.to_thread.run_sync(service, "svc:web2"), "svc:web2 created")
        await eventually(
            lambda: anyio.to_thread.run_sync(lambda: service("svc:web") is None), "svc:web deleted"
        )

        # Deleted: the service goes first, then the finalizer lets the object go.
        await client.delete(KINDS["TailscaleServices"], "web", apps)
        await eventually(
            lambda: anyio.to_thread.run_sync(lambda: service("svc:web2") is None), "svc:web2 deleted"
        )

        async def gone() -> bool:
            return await _get(client, KINDS["TailscaleServices"], "web", apps) is None

        await eventually(gone, "the object deleted once its service is gone")
        assert service("svc:taken") == foreign
        # The refused object goes too, leaving the foreign service as it was (and nothing of this
        # test for the next one's operator, whose worker would retry it against a stopped box).
        await client.delete(KINDS["TailscaleServices"], "taken", apps)

        async def taken_gone() -> bool:
            return await _get(client, KINDS["TailscaleServices"], "taken", apps) is None

        await eventually(taken_gone, "the refused object deleted")
        assert service("svc:taken") == foreign
        tg.cancel_scope.cancel()


async def test_another_clusters_service_defined_differently_is_a_condition_and_agreeing_shares_it(
    client: Client, tailnet_box: BoxedTailnet
) -> None:
    """Cluster A (simulated through the API: its claim by an object of the same kind, namespace
    and name) hosts svc:web on port 8080. This cluster's object wants port 80: the service keeps
    A's definition, the object's TailscaleServiceReady is False (NotClaimed; A's claim is not
    this cluster's even with the same object name) with a TailscaleServiceConflict Event. Once
    the object agrees (8080) its claim is added beside A's; deleting it releases only its own
    claim: the service stays for A."""
    tn = tailnet_box
    ops = await _namespace(client, "tsgw-system")
    apps = await _namespace(client, "apps")
    name = f"box-{uuid.uuid4().hex[:6]}"
    await client.apply(
        SECRETS,
        {
            "metadata": {"name": "oauth", "namespace": ops},
            "stringData": {"client_id": tn.oauth_client_id, "client_secret": tn.oauth_client_secret},
        },
        field_manager="test",
    )
    await client.create(
        KINDS["TailscaleTailnet"],
        {
            "apiVersion": API_VERSION,
            "kind": "TailscaleTailnet",
            "metadata": {"name": name},
            "spec": {
                "controlPlane": {"type": "Tailscale", "apiURL": tn.api_url, "loginURL": tn.box.url},
                "credentials": {"secretRef": {"namespace": ops, "name": "oauth"}, "oauth": {}},
                "tags": ["tag:k8s"],
            },
        },
    )
    theirs = OwnerRef("cluster-a", "TailscaleServices", apps, "web", "uid-in-a")
    made = plan_claim(
        None, TailscaleService("svc:web", ports=("tcp:8080",), tags=("tag:k8s",), comment="cluster a"), theirs
    ).service
    assert made is not None
    tn.call(tn.ts.put_service, made)
    obj = _services(apps, "web", name, "web")
    await client.create(KINDS["TailscaleServices"], obj)
    operator = Operator(
        client,
        OperatorOptions(
            namespace=ops,
            xds_address="127.0.0.1:0",
            admin_address="127.0.0.1:0",
            health_probe_address="127.0.0.1:0",
            metrics_address=None,
            leader_election=False,
            tailnet_poll_interval=1.0,
            cluster_id=CLUSTER,
        ),
    )

    def web() -> TailscaleService:
        return tn.call(tn.ts.get_service, "svc:web")

    async def condition() -> dict[str, Any] | None:
        return _condition(await client.get(KINDS["TailscaleServices"], "web", apps), "TailscaleServiceReady")

    async with anyio.create_task_group() as tg:
        await tg.start(operator.run)

        async def conflicted() -> bool:
            events = (await client.list(EVENTS, namespace=apps)).items
            return any(
                e.get("reason") == "TailscaleServiceConflict"
                and (e.get("regarding") or {}).get("name") == "web"
                for e in events
            )

        await eventually(conflicted, "a TailscaleServiceConflict Event on 'web'")

        # The facts (polled every second) hold cluster-a's claim; the condition is judged on them.
        async def not_claimed() -> dict[str, Any] | None:
            c = await condition()
            assert c is None or c["status"] == "False", c  # never ready on cluster A's claim
            return c if c is not None and c["reason"] == "NotClaimed" else None

        await eventually(not_claimed, "TailscaleServiceReady=False, NotClaimed")

        async def claimed(status: str) -> dict[str, Any] | None:
            obj = await client.get(KINDS["TailscaleServices"], "web", apps)
            c = _condition(obj, SERVICE_CLAIMED)
            return c if c is not None and c["status"] == status else None

        conflict = await eventually(lambda: claimed("False"), "TailscaleServiceClaimed=False")
        assert conflict["reason"] == "Conflict", conflict
        assert "cluster-a" in conflict["message"], conflict
        assert "tcp:8080" in conflict["message"], conflict
        now = await anyio.to_thread.run_sync(web)
        assert now.ports == ("tcp:8080",)
        assert owners_of(now) == (theirs,)

        # The object agrees with cluster A: its claim joins A's, and it is ready.
        await client.patch(
            KINDS["TailscaleServices"],
            "web",
            {"spec": {"ports": [{"port": 8080, "protocol": "HTTP"}]}},
            namespace=apps,
        )

        def shared() -> bool:
            return {o.operator_id for o in owners_of(web()) or ()} == {"cluster-a", CLUSTER}

        await eventually(lambda: anyio.to_thread.run_sync(shared), "both clusters' claims on svc:web")
        await eventually(lambda: _ready_polled(condition, "True"), "TailscaleServiceReady=True")
        shared_cond = await eventually(lambda: claimed("True"), "TailscaleServiceClaimed=True")
        assert "shared with cluster(s) cluster-a" in shared_cond["message"], shared_cond

        # Deleted here: only this cluster's claim goes; the service stays for cluster A.
        await client.delete(KINDS["TailscaleServices"], "web", apps)

        async def gone() -> bool:
            return await _get(client, KINDS["TailscaleServices"], "web", apps) is None

        await eventually(gone, "the object deleted once its claim is released")
        after = await anyio.to_thread.run_sync(web)
        assert owners_of(after) == (theirs,)
        assert after.addrs == now.addrs
        tg.cancel_scope.cancel()


async def _ready_polled(
    condition: Callable[[], Awaitable[dict[str, Any] | None]], status: str
) -> dict[str, Any] | None:
    c = await condition()
    return c if c is not None and c["status"] == status else None
