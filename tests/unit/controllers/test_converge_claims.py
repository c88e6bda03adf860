"""converge_claim / converge_release without I/O: an in-memory service store whose writes another
operator can undo between ours and our verify read, as over the real API."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any, cast

import pytest

from tsgw.controllers import converge_claim, converge_release
from tsgw.tailscale import (
    Client,
    InvalidRequestError,
    NotFoundError,
    OwnerRef,
    TailscaleService,
    owners_of,
    plan_claim,
)

pytestmark = pytest.mark.anyio

A = OwnerRef("cluster-a", "TailscaleServices", "apps", "web")
B = OwnerRef("cluster-b", "TailscaleServices", "apps", "web")
WEB = TailscaleService("svc:web", ports=("tcp:80",), tags=("tag:k8s",))


class Store:
    """One service in memory; ``after_write`` runs after each of our writes (another operator)."""

    def __init__(self, svc: TailscaleService | None = None) -> None:
        self.svc = svc
        self.writes = 0
        self.after_write: Callable[[], None] = lambda: None
        self.refuse: int = 0
        """Answer the next N puts with 400, as the API does to an update with stale VIPs."""

    async def get_service(self, name: str) -> TailscaleService:
        if self.svc is None:
            raise NotFoundError(404, "service not found")
        return self.svc

    async def put_service(self, svc: TailscaleService) -> TailscaleService:
        if self.refuse:
            self.refuse -= 1
            raise InvalidRequestError(400, "addrs must be the service's current addresses")
        self.writes += 1
        self.svc = dataclasses.replace(svc, addrs=svc.addrs or ("100.100.0.1",))
        self.after_write()
        return self.svc

    async def delete_service(self, name: str, *, missing_ok: bool = False) -> bool:
        self.writes += 1
        self.svc = None
        self.after_write()
        return True


async def _no_sleep(s: float) -> None:
    return None


def _api(store: Store) -> Client:
    return cast(Client, store)


def _kw() -> dict[str, Any]:
    return {"settle": 0.0, "sleep": _no_sleep, "rng": random.Random(1)}


async def test_a_claim_another_operator_overwrote_is_seen_and_written_again() -> None:
    shared = plan_claim(None, WEB, B).service
    assert shared is not None
    store = Store(dataclasses.replace(shared, addrs=("100.100.0.1",)))
    stale = store.svc
    undone: list[bool] = []

    def b_writes_its_stale_copy() -> None:  # B read before our write and writes after it, once
        if not undone:
            undone.append(True)
            store.svc = stale

    store.after_write = b_writes_its_stale_copy
    out = await converge_claim(_api(store), WEB, A, **_kw())
    assert out.action == "ok"
    assert out.writes == 2
    assert store.svc is not None
    assert set(owners_of(store.svc) or ()) == {A, B}


async def test_a_release_a_stale_write_undid_is_repeated() -> None:
    both = plan_claim(plan_claim(None, WEB, A).service, WEB, B).service
    assert both is not None
    store = Store(both)
    undone: list[bool] = []

    def b_restores() -> None:
        if not undone:
            undone.append(True)
            store.svc = both

    store.after_write = b_restores
    out = await converge_release(_api(store), "svc:web", A, **_kw())
    assert out.action == "ok"
    assert out.writes == 2
    assert store.svc is not None
    assert owners_of(store.svc) == (B,)


async def test_a_conflict_withdraws_this_objects_claim_and_leaves_the_definition() -> None:
    both = plan_claim(plan_claim(None, WEB, A).service, WEB, B).service
    assert both is not None
    store = Store(both)
    out = await converge_claim(_api(store), dataclasses.replace(WEB, ports=("tcp:8080",)), B, **_kw())
    assert out.action == "conflict"
    assert "tcp:8080" in out.reason
    assert store.svc is not None
    assert owners_of(store.svc) == (A,)
    assert store.svc.ports == ("tcp:80",)


async def test_a_400_on_a_service_that_changed_reads_again_and_on_one_that_did_not_raises() -> None:
    store = Store()
    # Our create was refused because B created it meanwhile (new VIPs): read again and join.
    b_made = plan_claim(None, WEB, B).service
    assert b_made is not None

    async def put(svc: TailscaleService) -> TailscaleService:
        if store.svc is None:
            store.svc = dataclasses.replace(b_made, addrs=("100.100.0.9",))
            raise InvalidRequestError(400, "addrs must be the service's current addresses")
        return await Store.put_service(store, svc)

    store.put_service = put  # type: ignore[method-assign]
    out = await converge_claim(_api(store), WEB, A, **_kw())
    assert out.action == "ok"
    assert store.svc is not None
    assert set(owners_of(store.svc) or ()) == {A, B}

    # A 400 on a service that did not change is a real error.
    plain = Store()
    plain.refuse = 1
    plain.svc = dataclasses.replace(b_made, addrs=("100.100.0.9",))
    with pytest.raises(InvalidRequestError):
        await converge_claim(_api(plain), WEB, A, **_kw())


async def test_a_service_that_keeps_changing_is_unsettled_after_the_attempts() -> None:
    store = Store()

    def someone_deletes() -> None:
        store.svc = None

    store.after_write = someone_deletes
    out = await converge_claim(_api(store), WEB, A, attempts=3, **_kw())
    assert out.action == "unsettled"
    assert out.writes == 3
