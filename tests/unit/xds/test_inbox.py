"""A stream's inbox keeps arrival order, wakes its one waiter, and drains before it ends."""

from __future__ import annotations

import anyio
import pytest

from tsgw.xds._server import _Inbox

pytestmark = pytest.mark.anyio


async def test_items_queued_before_close_are_delivered_in_order_then_none() -> None:
    inbox = _Inbox()
    inbox.put("request", b"1")
    inbox.put("snapshot")
    inbox.close()
    inbox.put("request", b"late")  # after close: dropped
    with anyio.fail_after(5):
        assert await inbox.get() == ("request", b"1")
        assert await inbox.get() == ("snapshot", b"")
        assert await inbox.get() is None
        assert await inbox.get() is None


async def test_a_waiting_get_wakes_on_put_and_on_close() -> None:
    inbox = _Inbox()
    got: list[object] = []

    async def take() -> None:
        got.append(await inbox.get())

    with anyio.fail_after(5):  # a get that never wakes fails here, not at pytest's timeout
        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            await anyio.wait_all_tasks_blocked()
            inbox.put("request", b"x")
        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            await anyio.wait_all_tasks_blocked()
            inbox.close()
    assert got == [("request", b"x"), None]


async def test_a_cancelled_get_leaves_the_inbox_usable() -> None:
    inbox = _Inbox()
    with anyio.move_on_after(0.01):
        await inbox.get()
    inbox.put("request", b"y")
    with anyio.fail_after(5):
        assert await inbox.get() == ("request", b"y")
