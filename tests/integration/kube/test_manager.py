"""The manager's shutdown order against the real API server (controller-runtime's
``engageStopProcedure``): always-on runnables, then leader-only ones, within one grace period;
stuck work is cancelled before the Lease is released; pending Events are written."""

from __future__ import annotations

import uuid

import anyio
import pytest

from tsgw.kube import (
    CONFIGMAPS,
    EVENTS,
    LEASES,
    Client,
    ControllerOptions,
    EventRecorderOptions,
    InformerOptions,
    LeaderElectionOptions,
    Manager,
    ManagerOptions,
    RawObject,
    ReconcilerFunc,
    Request,
    Result,
    controller_managed_by,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def configmap(ns: str, name: str) -> RawObject:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}}


async def test_an_always_on_controller_finishes_its_reconcile_on_a_graceful_stop(
    client: Client, namespace: str
) -> None:
    mgr = Manager(client)
    started = anyio.Event()
    finished: list[str] = []
    ctrl_box: list[object] = []

    async def reconcile(req: Request) -> Result | None:
        if req.name != "trigger":
            return None
        started.set()
        queue = ctrl_box[0].queue  # type: ignore[attr-defined]
        while not queue.shutting_down:  # noqa: ASYNC110  (the manager is stopping us now)
            await anyio.sleep(0.01)
        # Work that needs the API server after the stop began: it must not be cut short.
        await client.create(CONFIGMAPS, configmap(namespace, "written-during-shutdown"))
        finished.append(req.name)
        return None

    ctrl = (
        controller_managed_by(mgr)
        .for_(CONFIGMAPS, informer=InformerOptions(namespace=namespace))
        .with_options(ControllerOptions(need_leader_election=False))
        .complete(ReconcilerFunc(reconcile))
    )
    ctrl_box.append(ctrl)
    await client.create(CONFIGMAPS, configmap(namespace, "trigger"))
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(mgr.run)
            await started.wait()
            mgr.stop()
    assert finished == ["trigger"]
    assert await client.get_or_none(CONFIGMAPS, "written-during-shutdown", namespace) is not None


async def test_events_recorded_just_before_stop_are_written(client: Client, namespace: str) -> None:
    cm = await client.create(CONFIGMAPS, configmap(namespace, "about"))
    mgr = Manager(client)
    # A long flush interval: the second event is still pending when stop() comes.
    recorder = mgr.event_recorder(EventRecorderOptions(flush_interval=3600))
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(mgr.run)
            recorder.event(cm, "Normal", "First", "written by the first flush")
            while not (await client.list(EVENTS, namespace)).items:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            recorder.event(cm, "Normal", "Last", "recorded just before stop")
            mgr.stop()
    reasons = sorted(e["reason"] for e in (await client.list(EVENTS, namespace)).items)
    assert reasons == ["First", "Last"]


async def test_stuck_leader_work_is_cancelled_before_the_lease_is_released(
    client: Client, namespace: str
) -> None:
    lease = f"le-{uuid.uuid4().hex[:8]}"
    opts = LeaderElectionOptions(
        lease,
        namespace,
        identity="me",
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.5,
        release_on_cancel=True,
    )
    mgr = Manager(client, ManagerOptions(leader_election=opts, graceful_shutdown_timeout=0.5))
    holder_when_cancelled: list[str] = []
    working = anyio.Event()

    async def stuck() -> None:
        working.set()
        try:
            await anyio.sleep_forever()  # ignores the graceful stop
        finally:
            with anyio.CancelScope(shield=True):
                obj = await client.get(LEASES, lease, namespace)
                holder_when_cancelled.append(obj["spec"].get("holderIdentity") or "")

    mgr.add(stuck)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(mgr.run)
            await working.wait()
            mgr.stop()
    # Still ours while the stuck work ran; released only after it was cancelled.
    assert holder_when_cancelled == ["me"]
    assert not (await client.get(LEASES, lease, namespace))["spec"].get("holderIdentity")
