"""The status controller does not write a body again while its cache catches up with the write
(a pipeline push and an object event ~10-100 ms apart, seen on the bed), and looks again when
its memory of the write lapses; a changed body, the write seen in the cache without the body,
or a re-created object writes at once."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from tsgw.controllers import _status
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
    ) -> dict[str, Any]:
        self.applied.append(copy.deepcopy(obj))
        return {"metadata": {"resourceVersion": str(100 + len(self.applied))}}


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


async def test_one_body_is_not_written_again_while_the_cache_catches_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_status.time, "monotonic", lambda: clock[0])
    objects = {"web": _obj("10")}
    programmed = [True]
    r, client = _reconciler(objects, programmed)
    req = Request("apps", "web")
    assert await r.reconcile(req) is None
    # The cache still shows version 10 (or any version but the 101 the write made): not again,
    # looked at once more when the memory lapses.
    again = await r.reconcile(req)
    assert again is not None
    assert again.requeue_after == pytest.approx(_status.WRITE_MEMORY)
    objects["web"] = _obj("11")
    assert await r.reconcile(req) is not None
    assert len(client.applied) == 1
    programmed[0] = False  # a new verdict: written at once, whatever the cache shows
    await r.reconcile(req)
    assert len(client.applied) == 2
    objects["web"] = _obj("102")  # the cache has the write, and it does not hold the body
    await r.reconcile(req)  # (another writer's change came with it): written again
    assert len(client.applied) == 3
    objects["web"] = _obj("99")
    clock[0] += _status.WRITE_MEMORY  # the memory lapsed: the cache is compared as ever
    await r.reconcile(req)
    assert len(client.applied) == 4
    objects["web"] = _obj("99", uid="u2")  # re-created under the same name
    await r.reconcile(req)
    assert r.writes == 5
    del objects["web"]  # gone: forgotten
    await r.reconcile(req)
    assert r._last == {}
