"""Two managers compete for one Lease on the real API server."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import anyio
import pytest

from tests.integration.kube._contender import API_SLACK, LEASE, RENEW, RETRY
from tests.support.controlplane import ControlPlane
from tests.support.process import Process
from tsgw.kube import LEASES, Client, LeaderElectionOptions, Manager, ManagerOptions

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[3]
# The leader's last renewal is at most one retry period (jittered) before it dies; the standby
# notices it within one more, takes over at its first retry after the lease expired, and each
# step may wait for the API server.
EARLIEST = LEASE - RETRY * 1.2 - 1.0
"""The earliest take-over after the kill (s): the lease must have expired (1 s: the renewal's
own round trip before the kill)."""
LATEST = LEASE + 2 * RETRY * 1.2 + API_SLACK
"""The latest take-over after the kill (s)."""


class Contender:
    """A manager whose only leader-only runnable records when it acts (its timeline)."""

    def __init__(self, client: Client, name: str, lease: str, namespace: str) -> None:
        self.name = name
        self.acting: list[list[float]] = []  # [start, end] intervals of leader-only work
        opts = LeaderElectionOptions(
            lease, namespace, identity=name, lease_duration=LEASE, renew_deadline=RENEW, retry_period=RETRY
        )
        self.manager = Manager(client, ManagerOptions(leader_election=opts))
        self.manager.add(self.work)
        self.scope = anyio.CancelScope()

    async def work(self) -> None:
        self.acting.append([anyio.current_time(), float("inf")])
        try:
            await anyio.sleep_forever()
        finally:
            self.acting[-1][1] = anyio.current_time()

    @property
    def leading(self) -> bool:
        return bool(self.acting) and self.acting[-1][1] == float("inf")

    async def run(self) -> None:
        with self.scope:
            await self.manager.run()


async def test_the_standby_takes_over_within_the_lease_after_the_leader_dies_and_never_overlaps(
    control_plane: ControlPlane, namespace: str
) -> None:
    lease = f"le-{uuid.uuid4().hex[:8]}"
    async with (
        await Client.from_kubeconfig(str(control_plane.kubeconfig)) as ca,
        await Client.from_kubeconfig(str(control_plane.kubeconfig)) as cb,
    ):
        a = Contender(ca, "a", lease, namespace)
        b = Contender(cb, "b", lease, namespace)
        samples = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.run)
            tg.start_soon(b.run)
            with anyio.fail_after(15):
                while not (a.leading or b.leading):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            leader, standby = (a, b) if a.leading else (b, a)
            # Several lease durations of steady state: exactly one leader throughout.
            end = anyio.current_time() + 3 * LEASE
            while anyio.current_time() < end:
                assert leader.leading
                assert not standby.leading
                samples += 1
                await anyio.sleep(0.05)
            # Kill the leader: cancel it without releasing the Lease.
            killed_at = anyio.current_time()
            leader.scope.cancel()
            with anyio.fail_after(LATEST + 5):
                while not standby.leading:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            took_over_at = standby.acting[0][0]
            holder = (await cb.get(LEASES, lease, namespace))["spec"]
            standby.scope.cancel()

    timelines = {c.name: c.acting for c in (a, b)}
    print("timelines (start, end) in loop seconds:", timelines, "killed at", killed_at)
    # Within the lease duration of the leader's last renewal (≤ one retry period before the kill).
    assert took_over_at - killed_at <= LATEST
    # It waited for the lease to expire rather than stealing it.
    assert took_over_at - killed_at >= EARLIEST
    assert holder["holderIdentity"] == standby.name
    assert holder["leaseTransitions"] >= 1
    # Never two leaders at once: the leader's interval ends before the standby's begins.
    assert len(leader.acting) == 1
    assert len(standby.acting) == 1
    assert leader.acting[0][1] <= standby.acting[0][0]
    assert samples > 10


async def test_a_sigkilled_leader_process_is_replaced_within_the_lease_and_never_overlaps(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    lease = f"le-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "leader.log"
    leader = Process(
        "leader",
        [
            sys.executable,
            "-m",
            "tests.integration.kube._contender",
            control_plane.kubeconfig,
            namespace,
            lease,
            "a",
        ],
        log,
        cwd=ROOT,
    )
    try:
        leader.wait_ready(lambda: "acting" in log.read_text(), timeout=30, what="leading")
        async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as cb:
            b = Contender(cb, "b", lease, namespace)
            async with anyio.create_task_group() as tg:
                tg.start_soon(b.run)
                # Two lease durations while the leader process lives: the standby never acts.
                end = anyio.current_time() + 2 * LEASE
                while anyio.current_time() < end:
                    assert not b.leading
                    await anyio.sleep(0.05)
                killed_at = anyio.current_time()
                leader.kill()  # SIGKILL: no release, no goodbye
                with anyio.fail_after(LATEST + 5):
                    while not b.leading:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                holder = (await cb.get(LEASES, lease, namespace))["spec"]
                b.scope.cancel()
    finally:
        leader.stop()
    took_over_at = b.acting[0][0]
    print("killed at", killed_at, "standby acting", b.acting)
    assert killed_at < took_over_at  # never two leaders: the standby acts only after the kill
    assert EARLIEST <= took_over_at - killed_at <= LATEST
    assert holder["holderIdentity"] == "b"
    assert holder["leaseTransitions"] >= 1


async def test_a_leader_that_cannot_renew_stops_acting_and_run_raises_leader_election_lost(
    client: Client, namespace: str
) -> None:
    from tsgw.kube import LeaderElectionLost

    lease = f"le-{uuid.uuid4().hex[:8]}"
    c = Contender(client, "victim", lease, namespace)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:

            async def usurp() -> None:
                while not c.leading:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                obj = await client.get(LEASES, lease, namespace)
                obj["spec"]["holderIdentity"] = "usurper"
                await client.replace(LEASES, obj)

            tg.start_soon(usurp)
            with pytest.raises(LeaderElectionLost):
                await c.manager.run()
    assert len(c.acting) == 1
    assert c.acting[0][1] != float("inf")  # leader-only work was stopped
