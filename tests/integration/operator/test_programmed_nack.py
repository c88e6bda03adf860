"""A configuration Envoy rejects reaches the user: in-process Standalone serving a folder to a real
Envoy of the group's node cluster. A second port on the TailscaleServices is valid for every
schema, but the listener it needs is already taken on the proxy's host, so Envoy NACKs the
listener configuration ("cannot bind ... Address already in use"), which no validation can
foresee. The group owner's Programmed condition turns False (Rejected, with Envoy's message),
`problems()` and the admin API's ListSources name the file and line of the object, traffic stays
on the last good configuration, and fixing the file clears both once the Envoy ACKs.

(Values Envoy refuses that a schema can see, such as removing the host header, are refused by
tsgw.api and the CRDs before they reach Envoy: tests/unit/api, examples/invalid.)"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from tests.e2e.standalone import copy_example, get, write
from tests.support.backend import HttpBackend
from tests.support.envoy import EnvoyFactory
from tests.support.process import free_port
from tsgw.admin import AdminClient
from tsgw.model import Condition
from tsgw.operator import Standalone, StandaloneOptions
from tsgw.pipeline import PROGRAMMED, Published
from tsgw.providers import FileOptions
from tsgw.translate import Options
from tsgw.xds import bootstrap

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SECOND_PORT = """\
    - port: 80
      protocol: HTTP              # HTTP: routed by the rules below
      targetPort: http            # the backend Services' port, by name (backends.yaml)
    - port: 8443
      protocol: TCP
      targetPort: http
"""


def web_programmed(p: Published) -> Condition:
    """The Programmed condition of TailscaleServices demo/web in a published result."""
    st = p.status_of("TailscaleServices", "demo", "web")
    assert st is not None
    (cond,) = [c for c in st.conditions if c.type == PROGRAMMED]
    return cond


def reason_is(reason: str) -> Callable[[Published], bool]:
    return lambda p: web_programmed(p).reason == reason


async def test_a_nack_becomes_programmed_false_and_a_problem_and_a_fixed_file_clears_both(
    tmp_path: Path, envoy_factory: EnvoyFactory
) -> None:
    with HttpBackend("primary") as primary, HttpBackend("standby") as standby:
        folder = copy_example(tmp_path / "standalone", primary.port, standby.port)
        # The port the second listener will need (first_listener_port + 1), held by another
        # program: bound and listening, without SO_REUSEPORT.
        squatter = socket.socket()
        for _ in range(20):
            listener = free_port()
            try:
                squatter.bind(("127.0.0.1", listener + 1))
                break
            except OSError:
                continue
        else:
            pytest.fail("found no free pair of ports")
        squatter.listen()
        sa = Standalone(
            StandaloneOptions(
                directory=folder,
                xds_address="127.0.0.1:0",
                admin_address="127.0.0.1:0",
                translate=Options(first_listener_port=listener),
                file=FileOptions(probe_endpoints=False),
            )
        )
        async with anyio.create_task_group() as tg:
            await tg.start(sa.run)
            envoy = envoy_factory(
                bootstrap("web-0", "web-tssvc.demo", f"127.0.0.1:{sa.xds_port}", admin_port=0), start=False
            )
            await envoy.astart()
            with anyio.fail_after(20):
                ok = await sa.pipeline.latest.wait_for(reason_is("Programmed"))
            assert web_programmed(ok).status is True
            assert await anyio.to_thread.run_sync(get, listener) == (200, "primary")
            assert sa.problems() == ()

            # A listener Envoy cannot bind: the listener configuration is NACKed.
            good = (folder / "web.yaml").read_text()
            first_port = SECOND_PORT.split("    - port: 8443")[0]
            assert first_port in good
            write(folder / "web.yaml", good.replace(first_port, SECOND_PORT))
            with anyio.fail_after(20):
                rejected = web_programmed(await sa.pipeline.latest.wait_for(reason_is("Rejected")))
            assert rejected.status is False
            assert "Envoy 'web-0' rejected lds" in rejected.message
            assert "Address already in use" in rejected.message

            # The problem is the object's, at its file and line, with Envoy's message.
            web_yaml = (folder / "web.yaml").read_text().splitlines()
            line = next(i for i, ln in enumerate(web_yaml, 1) if ln.startswith("apiVersion:"))
            (problem,) = sa.problems()
            assert problem.file.endswith("web.yaml")
            assert problem.line == line
            assert "TailscaleServices demo/web: Programmed=Rejected: " in problem.reason
            assert "Address already in use" in problem.reason
            async with AdminClient(f"127.0.0.1:{sa.admin_port}") as admin:
                (source,) = await admin.list_sources()
            (listed,) = source.problems
            assert (listed.file, listed.line, listed.reason) == (problem.file, problem.line, problem.reason)
            # Envoy keeps its last good configuration: traffic still flows.
            assert await anyio.to_thread.run_sync(get, listener) == (200, "primary")

            # Fixing the file clears both once the Envoy ACKs.
            write(folder / "web.yaml", good)
            with anyio.fail_after(20):
                fixed = web_programmed(await sa.pipeline.latest.wait_for(reason_is("Programmed")))
            assert fixed.status is True
            assert sa.problems() == ()
            async with AdminClient(f"127.0.0.1:{sa.admin_port}") as admin:
                (source,) = await admin.list_sources()
            assert list(source.problems) == []
            assert await anyio.to_thread.run_sync(get, listener) == (200, "primary")
            tg.cancel_scope.cancel()
        squatter.close()
