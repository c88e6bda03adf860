"""The work queue's client-go invariants, driven by a fake clock, on asyncio and on trio."""

from __future__ import annotations

import anyio
import pytest

from tsgw.kube._clock import FakeClock
from tsgw.kube._errors import ShutDown
from tsgw.kube._ratelimit import (
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)
from tsgw.kube._workqueue import LOW_PRIORITY, WorkQueue, WorkQueueOptions

DEADLINE = 10
"""Every test that waits fails here (TimeoutError at the await) when an invariant breaks,
instead of hanging until pytest's 600 s timeout."""


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(clock: FakeClock | None = None) -> tuple[WorkQueue[str], FakeClock]:
    clock = clock or FakeClock()
    return WorkQueue[str](WorkQueueOptions(name="t", clock=clock)), clock


async def get_now(q: WorkQueue[str]) -> str | None:
    """The item ``get`` returns without time passing, or None if it would block."""
    with anyio.move_on_after(0.2):
        return await q.get()
    return None


@pytest.mark.anyio
async def test_adding_an_item_already_waiting_is_deduplicated() -> None:
    with anyio.fail_after(DEADLINE):
        q, _ = make()
        for _ in range(5):
            q.add("a")
        q.add("b")
        assert len(q) == 2
        assert await q.get() == "a"
        assert await q.get() == "b"
        assert await get_now(q) is None


@pytest.mark.anyio
async def test_an_item_being_processed_is_not_handed_out_again_until_done() -> None:
    with anyio.fail_after(DEADLINE):
        q, _ = make()
        q.add("a")
        assert await q.get() == "a"
        q.add("a")  # re-added while processing
        assert len(q) == 0
        assert await get_now(q) is None
        q.done("a")
        assert await q.get() == "a"  # processed again after


@pytest.mark.anyio
async def test_re_adds_while_processing_collapse_into_one_more_run() -> None:
    with anyio.fail_after(DEADLINE):
        q, _ = make()
        q.add("a")
        await q.get()
        q.add("a")
        q.add("a")
        q.done("a")
        assert await q.get() == "a"
        q.done("a")
        assert await get_now(q) is None


@pytest.mark.anyio
async def test_concurrent_workers_never_hold_the_same_item() -> None:
    with anyio.fail_after(DEADLINE):
        q, _ = make()
        holding: set[str] = set()
        overlaps = 0
        runs = 0

        async def worker() -> None:
            nonlocal overlaps, runs
            while True:
                try:
                    item = await q.get()
                except ShutDown:
                    return
                if item in holding:
                    overlaps += 1
                holding.add(item)
                runs += 1
                await anyio.lowlevel.checkpoint()
                if runs < 200:
                    q.add(item)
                await anyio.lowlevel.checkpoint()
                holding.discard(item)
                q.done(item)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(worker)
            for i in range(20):
                q.add(f"k{i % 4}")
            while runs < 200:  # noqa: ASYNC110 - polling a counter the workers bump
                await anyio.sleep(0.001)
            q.shutdown()
        assert overlaps == 0
        assert runs >= 200


@pytest.mark.anyio
async def test_add_after_holds_the_item_until_its_time_and_earlier_time_wins() -> None:
    with anyio.fail_after(DEADLINE):
        q, clock = make()
        q.add_after("a", 10.0)
        q.add_after("a", 5.0)  # earlier wins
        q.add_after("a", 50.0)  # later is ignored
        assert len(q) == 0
        assert q.delayed == 1
        async with anyio.create_task_group() as tg:
            got: list[str] = []

            async def taker() -> None:
                got.append(await q.get())

            tg.start_soon(taker)
            await anyio.sleep(0.01)
            clock.advance(4.9)
            await anyio.sleep(0.01)
            assert got == []
            clock.advance(0.2)
            with anyio.fail_after(2):
                while not got:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
        assert got == ["a"]
        assert q.delayed == 0


@pytest.mark.anyio
async def test_add_of_a_delayed_item_makes_it_ready_now_and_the_delay_then_dedups() -> None:
    with anyio.fail_after(DEADLINE):
        q, clock = make()
        q.add_after("a", 5.0)
        q.add("a")
        assert await q.get() == "a"
        q.done("a")
        clock.advance(6)
        # The delayed entry fires once more (client-go keeps it), but never concurrently.
        assert await get_now(q) == "a"


@pytest.mark.anyio
async def test_rate_limited_adds_back_off_exponentially_and_forget_resets() -> None:
    with anyio.fail_after(DEADLINE):
        q, clock = make()
        delays = []
        for _ in range(5):
            before = clock.now()
            q.add_rate_limited("a")
            ready_at = q._waiting["a"][0]
            delays.append(round(ready_at - before, 6))
            clock.advance(ready_at - before)
            assert await q.get() == "a"
            q.done("a")
        assert delays == [0.005, 0.01, 0.02, 0.04, 0.08]
        assert q.num_requeues("a") == 5
        q.forget("a")
        assert q.num_requeues("a") == 0


def test_exponential_limiter_caps_at_1000_seconds() -> None:
    lim = ItemExponentialRateLimiter()
    delays = [lim.when("x") for _ in range(40)]
    assert delays[0] == 0.005
    assert delays[-1] == 1000.0
    assert max(delays) == 1000.0
    assert lim.when("other") == 0.005  # per item


def test_bucket_limiter_lets_a_burst_through_then_spaces_items_at_qps() -> None:
    clock = FakeClock()
    lim = BucketRateLimiter(qps=10, burst=3, clock=clock)
    assert [lim.when(i) for i in range(3)] == [0, 0, 0]
    assert lim.when(3) == pytest.approx(0.1)
    assert lim.when(4) == pytest.approx(0.2)
    clock.advance(1.0)
    assert lim.when(5) == 0


def test_default_limiter_is_per_item_only_unless_the_bucket_is_asked_for() -> None:
    assert isinstance(default_controller_rate_limiter(), ItemExponentialRateLimiter)
    both = default_controller_rate_limiter(overall_bucket=True, clock=FakeClock())
    assert isinstance(both, MaxOfRateLimiter)
    assert [round(both.when(i), 3) for i in range(100)][-1] == 0.005  # burst 100, then bucket
    assert both.when("x") == pytest.approx(0.1, abs=0.01)


@pytest.mark.anyio
async def test_higher_priority_goes_first_and_initial_list_items_go_last() -> None:
    with anyio.fail_after(DEADLINE):
        q, _ = make()
        q.add("initial-1", LOW_PRIORITY)
        q.add("initial-2", LOW_PRIORITY)
        q.add("live")
        q.add("initial-2", 0)  # a live event for a waiting item raises its priority
        assert [await q.get() for _ in range(3)] == ["live", "initial-2", "initial-1"]


@pytest.mark.anyio
async def test_shutdown_wakes_waiting_workers_and_refuses_new_items() -> None:
    with anyio.fail_after(DEADLINE):
        q, _ = make()
        stopped = 0

        async def worker() -> None:
            nonlocal stopped
            with pytest.raises(ShutDown):
                await q.get()
            stopped += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            tg.start_soon(worker)
            await anyio.sleep(0.01)
            q.shutdown()
        assert stopped == 2
        q.add("late")
        assert len(q) == 0


@pytest.mark.anyio
async def test_shutdown_with_drain_waits_for_in_flight_items() -> None:
    with anyio.fail_after(DEADLINE):
        q, _ = make()
        q.add("a")
        item = await q.get()
        drained = False

        async def drain() -> None:
            nonlocal drained
            await q.shutdown_with_drain()
            drained = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            await anyio.sleep(0.01)
            assert not drained
            q.done(item)
        assert drained


@pytest.mark.anyio
async def test_the_client_token_bucket_waits_for_a_token_once_the_burst_is_spent() -> None:
    with anyio.fail_after(DEADLINE):
        from tsgw.kube import TokenBucket

        clock = FakeClock()
        bucket = TokenBucket(qps=5, burst=2, clock=clock)
        await bucket.acquire()
        await bucket.acquire()  # the burst: no wait
        got = False

        async def third() -> None:
            nonlocal got
            await bucket.acquire()
            got = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(third)
            await anyio.sleep(0.01)
            assert not got
            clock.advance(0.19)
            await anyio.sleep(0.01)
            assert not got
            clock.advance(0.02)  # 1/qps = 0.2 s
            with anyio.fail_after(2):
                while not got:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
