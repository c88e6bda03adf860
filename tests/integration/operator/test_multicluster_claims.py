"""Two clusters' operators claim one Tailscale Service at the same time, over real HTTP.

The hosted API has no conditional write for services, so each claim and release is a
read-modify-write (``tsgw.controllers.converge_claim`` / ``converge_release``, the code the
Tailscale Services controller runs). Here two operators (cluster ids ``cluster-a`` and
``cluster-b``, each with its own OAuth client) run those paths concurrently for 50 rounds of
spec changes against the API fake, whose :attr:`~tests.fake_tailscale.FakeTailscale.latency`
holds each request and each answer in transit for 0–15 ms, so one operator's read and write
straddle the other's. Each round:

- both change their object's comment (a spec change); every even round both release and
  claim again (an object re-created, a serviceName changed and back);
- in rounds ``r % 7 == 3`` cluster B asks for port 8080 instead of 80: a conflict, B withdraws
  its claim and the service keeps A's definition; B agrees again the round after.

Checked after every round: the owner list is exactly the operators that want the service with
its definition; at the end both hold claims. Never: a lost claim, port 8080 written, a change of
ports or tags of an existing service. The same schedule with the plain, unverified
read-modify-write (the operator's earlier code) does lose claims: the test shows the race is
exercised. Run against the plain fake and against the fake bound to the tailnet in a box (the
box's control server allocates the VIPs and keeps the service).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from tests.fake_tailscale import FakeTailscale, serve
from tests.support.boxed_fake import OPERATOR_TAG, BoxedTailnet
from tsgw.controllers import converge_claim, converge_release
from tsgw.tailscale import (
    APIKey,
    ClientOptions,
    InvalidRequestError,
    NotFoundError,
    OAuthClientCredentials,
    OwnerRef,
    TailscaleClient,
    TailscaleService,
    owners_of,
    plan_claim,
    plan_release,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

NAME = "svc:web"
ROUNDS = 50
SETTLE = 0.1
"""The verify delay in this test: above the 2 × 15 ms a stale write can spend in transit."""
A = OwnerRef("cluster-a", "TailscaleServices", "apps", "web", "uid-a")
B = OwnerRef("cluster-b", "TailscaleServices", "shop", "web", "uid-b")


def want(ports: str, comment: str) -> TailscaleService:
    return TailscaleService(NAME, ports=(ports,), tags=("tag:k8s",), comment=comment)


@dataclass
class Api:
    """One API (plain fake or boxed) and a way to mint one OAuth client per operator."""

    url: str
    fake: FakeTailscale
    oauth: Callable[[], tuple[str, str]]


@pytest.fixture(params=["plain", "box"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    if request.param == "plain":
        fake = FakeTailscale()
        with serve(fake) as url:
            yield Api(url, fake, lambda: fake.add_oauth_client(tags=("tag:k8s-operator",)))
    else:
        tn: BoxedTailnet = request.getfixturevalue("tailnet_box")
        yield Api(tn.api_url, tn.fake, lambda: tn.fake.add_oauth_client(tags=(OPERATOR_TAG,)))


@dataclass
class Run:
    lost: list[str] = field(default_factory=list)
    """Rounds whose end state was not the exact owner list (with what was wrong)."""
    owners_at_end: set[OwnerRef] = field(default_factory=set)


Step = Callable[[TailscaleClient, TailscaleService, OwnerRef], Awaitable[object]]


async def _plain_claim(ts: TailscaleClient, w: TailscaleService, me: OwnerRef) -> None:
    """The unverified read-modify-write: read once, write once."""
    try:
        current: TailscaleService | None = await ts.get_service(NAME)
    except NotFoundError:
        current = None
    plan = plan_claim(current, w, me)
    if plan.action == "put" and plan.service is not None:
        with contextlib.suppress(InvalidRequestError):  # stale VIPs: the old code retried in 10 s
            await ts.put_service(plan.service)


async def _plain_release(ts: TailscaleClient, w: TailscaleService, me: OwnerRef) -> None:
    try:
        current = await ts.get_service(NAME)
    except NotFoundError:
        return
    plan = plan_release(current, me)
    if plan.action == "delete":
        await ts.delete_service(NAME, missing_ok=True)
    elif plan.action == "put" and plan.service is not None:
        with contextlib.suppress(InvalidRequestError):
            await ts.put_service(plan.service)


async def _schedule(api: Api, claim: Step, release: Step, seed: int) -> Run:
    rng = random.Random(seed)
    api.fake.latency = lambda method, path: (
        (rng.uniform(0, 0.015), rng.uniform(0, 0.015)) if "vip-services" in path else (0.0, 0.0)
    )
    run = Run()
    ca, cb = api.oauth(), api.oauth()
    async with (
        TailscaleClient(OAuthClientCredentials(*ca), ClientOptions(base_url=api.url)) as ta,
        TailscaleClient(OAuthClientCredentials(*cb), ClientOptions(base_url=api.url)) as tb,
    ):
        for r in range(ROUNDS):
            b_agrees = r % 7 != 3
            again = r % 2 == 0 and b_agrees

            async def act(
                ts: TailscaleClient, me: OwnerRef, w: TailscaleService, delay: float, again: bool = again
            ) -> None:
                await anyio.sleep(delay)
                if again:
                    await release(ts, w, me)
                await claim(ts, w, me)

            async with anyio.create_task_group() as tg:
                tg.start_soon(act, ta, A, want("tcp:80", f"a generation {r}"), rng.uniform(0, 0.01))
                tg.start_soon(
                    act,
                    tb,
                    B,
                    want("tcp:80" if b_agrees else "tcp:8080", f"b generation {r}"),
                    rng.uniform(0, 0.01),
                )
            svc = await ta.get_service(NAME)
            owners = set(owners_of(svc) or ())
            expected = {A, B} if b_agrees else {A}
            if owners != expected:
                run.lost.append(f"round {r}: owners {sorted(o.operator_id for o in owners)}")
        run.owners_at_end = set(owners_of(await ta.get_service(NAME)) or ())
    api.fake.latency = None
    return run


async def _verified_claim(ts: TailscaleClient, w: TailscaleService, me: OwnerRef) -> None:
    out = await converge_claim(ts, w, me, settle=SETTLE)
    assert out.action in ("ok", "conflict"), out


async def _verified_release(ts: TailscaleClient, w: TailscaleService, me: OwnerRef) -> None:
    out = await converge_release(ts, NAME, me, settle=SETTLE)
    assert out.action == "ok", out


def _writes(fake: FakeTailscale, since: int) -> tuple[int, int, list[str]]:
    """(PUTs and DELETEs of the service, writes that changed an existing service's ports or
    tags, problems) among ``fake.calls[since:]``."""
    writes = 0
    redefinitions = 0
    problems: list[str] = []
    definition: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    for c in fake.calls[since:]:
        if not c.path.endswith(f"/vip-services/{NAME}") or c.status != 200:
            continue
        if c.method == "DELETE":
            writes += 1
            definition = None
        elif c.method == "PUT":
            writes += 1
            d = (tuple(c.body["ports"]), tuple(c.body.get("tags") or ()))
            if "tcp:8080" in d[0]:
                problems.append(f"port 8080 written: {c.body}")
            if definition is not None and d != definition:
                redefinitions += 1
            definition = d
    return writes, redefinitions, problems


async def test_two_operators_interleaving_50_rounds_keep_the_exact_owner_list(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    # The unverified read-modify-write, same schedule: claims are lost (the race is real here).
    mark = len(api.fake.calls)
    plain = await _schedule(api, _plain_claim, _plain_release, seed=7)
    plain_writes, _, _ = _writes(api.fake, mark)
    with anyio.fail_after(60):  # clean the service up for the verified run
        for me in (A, B):
            await _cleanup(api, me)
    assert plain.lost, "the schedule never made one operator's write lose the other's claim"

    mark = len(api.fake.calls)
    run = await _schedule(api, _verified_claim, _verified_release, seed=7)
    writes, redefinitions, problems = _writes(api.fake, mark)
    assert run.lost == []
    assert run.owners_at_end == {A, B}
    assert problems == []
    assert redefinitions == 0
    with capsys.disabled():
        print(
            f"\n[{ROUNDS} rounds] unverified: {len(plain.lost)} rounds lost a claim, {plain_writes} writes; "
            f"verified: 0 lost, {writes} writes (PUT/DELETE), {redefinitions} redefinitions"
        )


async def _cleanup(api: Api, me: OwnerRef) -> None:
    cid = api.oauth()
    async with TailscaleClient(OAuthClientCredentials(*cid), ClientOptions(base_url=api.url)) as ts:
        await converge_release(ts, NAME, me, settle=0.0)


def _recovery_script() -> str:
    """The shell block of docs/multicluster.md that removes a dead cluster's claim."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "multicluster.md").read_text()
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", doc, flags=re.S)
    (script,) = [b for b in blocks if "DEAD=" in b]
    return script


async def test_the_documented_recovery_removes_a_dead_clusters_claim_and_only_it(tmp_path: Path) -> None:
    """Cluster A died holding a claim; the commands docs/multicluster.md gives a person remove it
    (over real HTTP, with curl and jq, the API URL and token swapped in); cluster B's claim and
    the VIPs stay, B's next reconcile writes nothing, and B's release then deletes the service."""
    fake = FakeTailscale()
    token = fake.add_api_key()
    dead = OwnerRef("eu-west-1", "TailscaleServices", "apps", "web", "uid-a")
    alive = OwnerRef("us-east-1", "TailscaleServices", "apps", "web", "uid-b")
    with serve(fake) as url:
        async with TailscaleClient(APIKey(token), ClientOptions(base_url=url)) as ts:
            for me in (dead, alive):
                assert (await converge_claim(ts, want("tcp:80", "web"), me, settle=0.0)).action == "ok"
            before = await ts.get_service(NAME)
            script = _recovery_script()
            script = re.sub(r"^API=.*$", f"API={url}/api/v2/tailnet/-", script, flags=re.M)
            assert "DEAD=eu-west-1" in script
            out = await anyio.run_process(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=tmp_path,
                env={"TOKEN": token, "PATH": os.environ["PATH"]},
            )
            assert out.stdout.decode().split()[0] == "1"  # what the script prints: claims left
            after = await ts.get_service(NAME)
            assert owners_of(after) == (alive,)
            assert after.addrs == before.addrs
            assert (await converge_claim(ts, want("tcp:80", "web"), alive, settle=0.0)).writes == 0
            assert (await converge_release(ts, NAME, alive, settle=0.0)).action == "ok"
            with pytest.raises(NotFoundError):
                await ts.get_service(NAME)
