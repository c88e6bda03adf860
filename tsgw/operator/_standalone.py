"""`tsgw run --standalone DIR`: the folder provider feeding the pipeline, with the xDS server,
the admin API and (optionally) health and metrics beside it. Wiring only.

providers.FileProvider → pipeline.Pipeline (translate → one xds.Snapshot per proxy group, keyed
by its node cluster `<group>.<namespace>`) → xds.AdsServer; the pipeline follows the server's
ACKs and NACKs. Each proxy group's Envoys connect with ``--service-cluster <node cluster>``
(``tsgw bootstrap --group NAMESPACE/GROUP`` writes it), exactly as the proxy pods of a cluster
do. The folder's problems, for `tsgw status`, are its bad files, the objects translation did not
accept, and the objects whose configuration an Envoy rejected (NACK) or the server refused, each
at the file and line that produced it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import prometheus_client
import structlog
from anyio.abc import TaskStatus

from tsgw import translate
from tsgw._address import parse_address
from tsgw.admin import DEFAULT_ADDRESS, AdminService, messages
from tsgw.extension import ExtensionService
from tsgw.kube import HealthServer
from tsgw.pipeline import ACTIONABLE, PROGRAMMED, Pipeline, PipelineOptions, Published, Update
from tsgw.providers import FileOptions, FileProvider, FolderState, Problem
from tsgw.xds import AdsServer, ServerOptions, SnapshotCache

__all__ = ["Standalone", "StandaloneOptions"]

log = structlog.get_logger("tsgw.operator")


@dataclass(frozen=True)
class StandaloneOptions:
    """`tsgw run --standalone DIR`."""

    directory: Path
    """The folder of YAML to serve. Required."""
    xds_address: str = "127.0.0.1:18000"
    """Where Envoys reach the ADS server (port 0: any free port). Default: 127.0.0.1:18000."""
    admin_address: str = DEFAULT_ADDRESS
    """The admin API (`tsgw status`, `tsgw snapshot`). Default: 127.0.0.1:9911."""
    translate: translate.Options = field(default_factory=translate.Options)
    """How listeners and clusters are shaped (first listener port, CONNECT proxy port).
    Default: translate.Options()."""
    file: FileOptions = field(default_factory=FileOptions)
    """How the folder is read, watched and its endpoints probed. Default: FileOptions()."""
    health_probe_address: str | None = None
    """``host:port`` serving ``/healthz``, ``/readyz`` (ready once the first folder state is
    published) and ``/metrics`` (the ``tsgw_xds_*`` metrics and the process's). Default: None
    (not served)."""
    extension_address: str | None = None
    """Where Envoy Gateway reaches tsgw's extension server (its ``extensionManager.service``).
    Default: None (not served)."""
    xds_auth_key: bytes | None = None
    """Authenticate every ADS stream with its group's token (``tsgw.xds.group_token`` of this
    key; ``tsgw bootstrap --xds-auth-key-file`` writes it into a bootstrap). Default: None (no
    authentication: the ADS server listens on loopback)."""


class Standalone:
    """The standalone control plane: a watched folder feeding the pipeline and the servers."""

    def __init__(self, options: StandaloneOptions) -> None:
        self.options = options
        self._xds = parse_address(options.xds_address, what="xDS address")
        self._admin = parse_address(options.admin_address, what="admin address")
        self.cache = SnapshotCache()
        self.ads = AdsServer(self.cache, ServerOptions(auth_key=options.xds_auth_key))
        self.pipeline = Pipeline(self.cache, PipelineOptions(translate=options.translate), ads=self.ads)
        self.admin = AdminService(self.cache, self.ads, sources=self.sources)
        self._extension = (
            parse_address(options.extension_address, what="extension address")
            if options.extension_address is not None
            else None
        )
        self.extension = ExtensionService()
        self.extension_port = 0
        self.provider = FileProvider(options.directory, options.file)
        self.xds_port = 0
        self.admin_port = 0
        self.health: HealthServer | None = None
        if options.health_probe_address is not None:
            phost, pport = parse_address(
                options.health_probe_address, what="health probe address", empty_host="0.0.0.0"
            )
            # One registry for the process: the xDS metrics, the framework's and the process's.
            self.health = HealthServer(phost, pport, registry=prometheus_client.REGISTRY)
            self.health.readyz["folder"] = lambda: self.applied > 0
        self._state: FolderState | None = None
        self._applied = 0
        self._logged: tuple[Problem, ...] = ()

    @property
    def translator(self) -> translate.Translator:
        return self.pipeline.translator

    @property
    def applied(self) -> int:
        """How many folder states have been translated and published."""
        return self._applied

    # status ----------------------------------------------------------------------------------

    def problems(self) -> tuple[Problem, ...]:
        """Everything not served as written: bad files, objects translation did not accept, and
        objects whose configuration an Envoy rejected or the xDS server refused."""
        st = self._state
        latest = self.pipeline.latest.value
        if st is None:
            return ()
        problems = list(st.problems)
        for status in latest.statuses if latest is not None else ():
            bad = [
                c
                for c in status.conditions
                if not c.status and (c.type != PROGRAMMED or c.reason in ACTIONABLE)
            ]
            if not bad:
                continue
            ref = status.ref
            file, line = st.origins.get((ref.kind, ref.namespace, ref.name), ("", 0))
            reason = "; ".join(f"{c.type}={c.reason}: {c.message}" if c.message else c.reason for c in bad)
            problems.append(Problem(file, line, f"{ref.kind} {ref.namespace}/{ref.name}: {reason}"))
        return tuple(problems)

    def sources(self) -> list[messages.Source]:
        st = self._state
        if st is None:
            return []
        return [
            messages.Source(
                kind="folder",
                location=str(self.options.directory),
                generation=st.generation,
                loaded_at=st.loaded_at,
                objects=len(st.inputs.objects) + len(st.inputs.services) + len(st.inputs.endpoint_slices),
                problems=[
                    messages.SourceProblem(file=p.file, line=p.line, reason=p.reason) for p in self.problems()
                ],
            )
        ]

    async def wait_applied(self, count: int) -> None:
        """Wait until at least ``count`` folder states have been applied (tests, benchmarks)."""
        await self.pipeline.latest.wait_for(lambda _: self._applied >= count)

    def _log_problems(self) -> None:
        problems = self.problems()
        for p in problems:
            if p not in self._logged:
                log.warning("not served as written", problem=str(p))
        self._logged = problems

    # the pipeline ----------------------------------------------------------------------------

    def apply(self, state: FolderState) -> Published:
        """Translate one folder state and publish the snapshots of the groups that changed."""
        self._state = state
        self._applied += 1
        published = self.pipeline.apply(Update(state.inputs, state.generation))
        self._log_problems()
        return published

    async def _updates(self, watch: AsyncIterator[FolderState]) -> AsyncIterator[Update]:
        async for state in watch:
            self._state = state
            self._applied += 1
            yield Update(state.inputs, state.generation)

    async def _follow_problems(self) -> None:
        async for _ in self.pipeline.latest.watch():
            self._log_problems()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve xDS and the admin API and follow the folder, until cancelled. Reports started
        once the first folder state is published and both servers listen."""
        watch = self.provider.watch()
        try:
            updates = self._updates(watch)
            async with anyio.create_task_group() as tg:
                # The first reading is published before anything listens (a missing folder
                # fails here); Envoys that connect then find their snapshots.
                await tg.start(self.pipeline.run, updates)
                self.xds_port = await tg.start(self.ads.serve, *self._xds)
                self.admin_port = await tg.start(self.admin.serve, *self._admin)
                if self._extension is not None:
                    self.extension_port = await tg.start(self.extension.serve, *self._extension)
                if self.health is not None:
                    await tg.start(self.health.serve)
                tg.start_soon(self._follow_problems)
                log.info(
                    "standalone serving",
                    folder=str(self.options.directory),
                    xds=f"{self._xds[0]}:{self.xds_port}",
                    admin=f"{self._admin[0]}:{self.admin_port}",
                )
                task_status.started()
        finally:
            await watch.aclose()
