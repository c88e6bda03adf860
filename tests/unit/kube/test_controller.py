"""The reconcile loop's result handling, on a fake clock (no API server needed)."""

from __future__ import annotations

import anyio
import pytest
import structlog

from tsgw.kube import Controller, ControllerOptions, FakeClock, Request, Result, TerminalError

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Scripted:
    """Answers each reconcile of an object with the next scripted outcome."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict[str, object]] = []

    async def reconcile(self, request: Request) -> Result | None:
        self.calls.append(structlog.contextvars.get_contextvars())
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]


async def settle() -> None:
    for _ in range(20):
        await anyio.lowlevel.checkpoint()
    await anyio.sleep(0.01)


async def drive(ctrl: Controller, clock: FakeClock, steps: list[float]) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(ctrl.run)
        await settle()
        for dt in steps:
            clock.advance(dt)
            await settle()
        ctrl.shutdown()


async def test_an_error_is_retried_with_per_item_backoff_then_forgotten_on_success() -> None:
    clock = FakeClock()
    rec = Scripted(RuntimeError("boom"), RuntimeError("boom"), None)
    ctrl = Controller("t", rec, clock=clock)
    ctrl.queue.add(Request("ns", "a"))
    await drive(ctrl, clock, [0.004, 0.002, 0.009, 0.002])  # 5 ms, then 10 ms
    assert len(rec.calls) == 3
    assert ctrl.queue.num_requeues(Request("ns", "a")) == 0  # forgotten after success


async def test_a_terminal_error_is_not_retried() -> None:
    clock = FakeClock()
    rec = Scripted(TerminalError("bad spec"))
    ctrl = Controller("t", rec, clock=clock)
    ctrl.queue.add(Request("ns", "a"))
    await drive(ctrl, clock, [1.0, 100.0, 1000.0])
    assert len(rec.calls) == 1


async def test_requeue_after_runs_the_reconcile_again_after_that_long() -> None:
    clock = FakeClock()
    rec = Scripted(Result(requeue_after=30.0), None)
    ctrl = Controller("t", rec, clock=clock)
    ctrl.queue.add(Request("ns", "a"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(ctrl.run)
        await settle()
        clock.advance(29.0)
        await settle()
        assert len(rec.calls) == 1
        clock.advance(1.5)
        await settle()
        assert len(rec.calls) == 2
        ctrl.shutdown()


async def test_each_reconcile_has_its_own_id_and_the_object_bound_in_the_log_context() -> None:
    clock = FakeClock()
    rec = Scripted(None, None)
    ctrl = Controller("widget", rec, ControllerOptions(max_concurrent_reconciles=2), clock=clock)
    ctrl.queue.add(Request("ns", "a"))
    ctrl.queue.add(Request("ns", "b"))
    await drive(ctrl, clock, [])
    assert {c["name"] for c in rec.calls} == {"a", "b"}
    assert all(c["controller"] == "widget" and c["namespace"] == "ns" for c in rec.calls)
    assert rec.calls[0]["reconcileID"] != rec.calls[1]["reconcileID"]


async def test_a_terminal_error_inside_an_exception_group_is_not_retried() -> None:
    async def fails_in_a_task_group(request: Request) -> Result | None:
        async def child() -> None:
            raise TerminalError("bad spec, found by a subtask")

        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        return None

    clock = FakeClock()
    calls = Scripted()
    original = calls.reconcile

    async def reconcile(request: Request) -> Result | None:
        await original(request)
        return await fails_in_a_task_group(request)

    calls.reconcile = reconcile  # type: ignore[method-assign]
    ctrl = Controller("t", calls, clock=clock)
    ctrl.queue.add(Request("ns", "a"))
    await drive(ctrl, clock, [1.0, 100.0, 1000.0])
    assert len(calls.calls) == 1
