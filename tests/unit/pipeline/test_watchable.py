"""Watchable: the latest value, readable at once or awaited. A reader sees each value set after
the version it knows, a predicate waiter returns on the first value that satisfies it (the current
one included), and a slow watcher skips to the newest value instead of working through a backlog."""

from __future__ import annotations

import anyio
import pytest

from tsgw.pipeline import Watchable

pytestmark = pytest.mark.anyio


async def test_nothing_before_the_first_set_then_the_value_and_its_version() -> None:
    w: Watchable[str] = Watchable()
    assert (w.value, w.version) == (None, 0)
    w.set("a")
    assert (w.value, w.version) == ("a", 1)
    # A value already newer than the version the reader knows is returned at once.
    with anyio.fail_after(1):
        assert await w.newer(0) == (1, "a")


async def test_newer_waits_for_a_value_after_the_known_version() -> None:
    w: Watchable[str] = Watchable()
    w.set("a")
    got: list[tuple[int, str]] = []

    async def reader() -> None:
        got.append(await w.newer(1))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            assert got == []  # version 1 is known: nothing newer yet
            w.set("b")
    assert got == [(2, "b")]


async def test_newer_before_any_value_waits_for_the_first() -> None:
    w: Watchable[int] = Watchable()
    got: list[tuple[int, int]] = []

    async def reader() -> None:
        got.append(await w.newer(0))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            w.set(7)
    assert got == [(1, 7)]


async def test_wait_for_returns_the_current_value_when_it_already_holds() -> None:
    w: Watchable[int] = Watchable()
    w.set(5)
    with anyio.fail_after(1):
        assert await w.wait_for(lambda v: v > 3) == 5


async def test_wait_for_skips_values_until_the_predicate_holds() -> None:
    w: Watchable[int] = Watchable()
    w.set(1)
    got: list[int] = []

    async def waiter() -> None:
        got.append(await w.wait_for(lambda v: v >= 3))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            for v in (2, 0, 3, 4):
                await anyio.wait_all_tasks_blocked()
                w.set(v)
    assert got == [3]


async def test_many_waiters_are_all_woken_by_one_set() -> None:
    w: Watchable[str] = Watchable()
    got: list[str] = []

    async def reader() -> None:
        got.append((await w.newer(0))[1])

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            w.set("x")
    assert got == ["x"] * 5


async def test_watch_yields_the_current_value_then_each_newer_one() -> None:
    w: Watchable[int] = Watchable()
    w.set(0)
    seen: list[int] = []

    async def watcher() -> None:
        async for v in w.watch():
            seen.append(v)
            if v == 2:
                return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher)
            for v in (1, 2):
                await anyio.wait_all_tasks_blocked()  # the watcher has taken the previous value
                w.set(v)
    assert seen == [0, 1, 2]


async def test_a_slow_watcher_skips_to_the_latest_value() -> None:
    w: Watchable[int] = Watchable()
    w.set(0)
    seen: list[int] = []
    release = anyio.Event()

    async def slow_watcher() -> None:
        async for v in w.watch():
            seen.append(v)
            if v == 0:
                await release.wait()  # busy while values 1..9 are set
            if v == 9:
                return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_watcher)
            await anyio.wait_all_tasks_blocked()
            for v in range(1, 10):
                w.set(v)
            release.set()
    # No backlog: after the value it was busy with, the reader gets the newest one only.
    assert seen == [0, 9]
