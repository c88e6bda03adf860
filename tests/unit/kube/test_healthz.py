"""Probe aggregation follows controller-runtime's healthz: ok, verbose, exclude, 500 on failure."""

from __future__ import annotations

import pytest

from tsgw.kube import HealthServer

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_probes_answer_ok_then_a_failing_check_gives_500_with_the_verbose_list() -> None:
    srv = HealthServer("127.0.0.1", 0, metrics=False)
    assert await srv.respond("/healthz") == (200, "text/plain", b"ok")
    healthy = True

    async def informers() -> bool:
        return healthy

    srv.readyz["informers"] = informers
    status, _, body = await srv.respond("/readyz?verbose")
    assert status == 200
    assert body.decode().endswith("healthz check passed\n")
    healthy = False
    status, _, body = await srv.respond("/readyz")
    assert status == 500
    assert "[+]ping ok\n[-]informers failed: reason withheld\nhealthz check failed" in body.decode()
    status, _, body = await srv.respond("/readyz?exclude=informers")
    assert status == 200
    assert (await srv.respond("/readyz/informers"))[0] == 500
    assert (await srv.respond("/readyz/nope"))[0] == 404
    assert (await srv.respond("/healthz"))[0] == 200  # liveness does not depend on readiness
