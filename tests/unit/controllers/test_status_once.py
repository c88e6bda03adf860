"""The status controller writes a body once per cached version: a second reconcile before the
informer has seen the first write (a pipeline push and an object event ~10 ms apart, seen on
the bed) writes nothing; a newer cached version, a changed body or a re-created object does."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from tsgw.controllers._status import StatusReconciler
from tsgw.kube import Request, Resource
from tsgw.model import Condition, ObjectRef, ObjectStatus

pytestmark = pytest.mark.anyio

SERVICES = Resource("gateway.tailscale.com/v1alpha1", "TailscaleServices", "tailscaleservices")


class _Client:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    async def apply_status(
        self, resource: Resource, obj: dict[str, Any], *, field_manager: str | None
    ) -> None:
        self.applied.append(copy.deepcopy(obj))


def _obj(rv: str, uid: str = "u1") -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "apps", "uid": uid, "generation": 1, "resourceVersion": rv},
        "status": {},
    }


def _reconciler(objects: dict[str, Any], programmed: list[bool]) -> tuple[StatusReconciler, _Client]:
    def status_of(kind: str, ns: str, name: str) -> ObjectStatus:
        md = objects["web"]["metadata"]
        ref = ObjectRef(kind, ns, name, md["uid"], 1)
        return ObjectStatus(ref, (Condition("Programmed", programmed[0], "Programmed", ""),))

    store = SimpleNamespace(get=lambda req: objects.get(req.name))
    pipeline = SimpleNamespace(latest=SimpleNamespace(value=SimpleNamespace(status_of=status_of)))
    client = _Client()
    return StatusReconciler(client, SERVICES, store, pipeline), client  # type: ignore[arg-type]


async def test_one_body_is_written_once_per_cached_version() -> None:
    objects = {"web": _obj("10")}
    programmed = [True]
    r, client = _reconciler(objects, programmed)
    req = Request("apps", "web")
    await r.reconcile(req)
    await r.reconcile(req)  # the cache still shows version 10: the first write is not seen yet
    assert len(client.applied) == 1
    programmed[0] = False  # a new verdict, same stale version: written
    await r.reconcile(req)
    assert len(client.applied) == 2
    objects["web"] = _obj("11")  # a newer version that does not hold it (another writer undid it)
    await r.reconcile(req)
    assert len(client.applied) == 3
    objects["web"] = _obj("11", uid="u2")  # re-created under the same name
    await r.reconcile(req)
    assert len(client.applied) == 4
    assert r.writes == 4
    del objects["web"]  # gone: forgotten
    await r.reconcile(req)
    assert r._last == {}
