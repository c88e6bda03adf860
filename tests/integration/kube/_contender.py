"""A manager contending for a Lease, as its own process, so a test can SIGKILL the leader:
``python -m tests.integration.kube._contender KUBECONFIG NAMESPACE LEASE IDENTITY``. It prints
``acting`` (flushed) when its leader-only runnable starts and then works until killed."""

from __future__ import annotations

import sys

import anyio

from tsgw.kube import Client, LeaderElectionOptions, Manager, ManagerOptions

LEASE, RENEW, RETRY = 6.0, 4.0, 1.0
"""Lease duration, renew deadline and retry period (s), shared with test_leaderelection: a
leader steps down when no renewal round trip (HTTP, API server, etcd) succeeds within RENEW,
which on a loaded 2-core machine a 2 s deadline did not always leave room for."""
API_SLACK = 3.0
"""Room (s) for API round trips and scheduling on a loaded machine in the take-over bounds."""


async def main(kubeconfig: str, namespace: str, lease: str, identity: str) -> None:
    async with await Client.from_kubeconfig(kubeconfig) as client:
        opts = LeaderElectionOptions(
            lease,
            namespace,
            identity=identity,
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
        )
        manager = Manager(client, ManagerOptions(leader_election=opts))

        async def work() -> None:
            print("acting", flush=True)
            await anyio.sleep_forever()

        manager.add(work)
        await manager.run()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:5])
