"""Wiring: builds the manager with every runnable (informers, controllers, the xDS server, the
extension server, the admin API). The only module that knows all the rooms; the CLI calls it.

Standalone mode (:class:`Standalone`) is the same pipeline with a folder in place of the
Kubernetes API: providers.FileProvider → translate.Translator → one xds.Snapshot per proxy
group in an xds.SnapshotCache → xds.AdsServer, with the admin API beside it. Each proxy group's
Envoys connect with ``--service-cluster <group name>`` (the node cluster selects the snapshot),
exactly as the proxy pods of a cluster do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import prometheus_client
import structlog
from anyio.abc import TaskStatus

from tsgw import translate
from tsgw.admin import DEFAULT_ADDRESS, AdminService, messages
from tsgw.kube import HealthServer
from tsgw.providers import FileOptions, FileProvider, FolderState, Problem
from tsgw.xds import AdsServer, Snapshot, SnapshotCache, XdsError

__all__ = ["Standalone", "StandaloneOptions"]

log = structlog.get_logger("tsgw.operator")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


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


class Standalone:
    """The standalone control plane: a watched folder feeding the xDS and admin servers."""

    def __init__(self, options: StandaloneOptions) -> None:
        self.options = options
        self.cache = SnapshotCache()
        self.ads = AdsServer(self.cache)
        self.admin = AdminService(self.cache, self.ads, sources=self.sources)
        self.provider = FileProvider(options.directory, options.file)
        self.translator = translate.Translator(options.translate)
        self.xds_port = 0
        self.admin_port = 0
        self.health: HealthServer | None = None
        if options.health_probe_address is not None:
            phost, pport = _split(options.health_probe_address)
            # The xDS metrics live on prometheus_client's default registry, with the process's.
            self.health = HealthServer(phost, pport, registry=prometheus_client.REGISTRY)
            self.health.readyz["folder"] = lambda: self.applied > 0
        self.applied = 0
        """How many folder states have been translated and published."""
        self._state: FolderState | None = None
        self._problems: tuple[Problem, ...] = ()
        self._changed = anyio.Event()

    # status ----------------------------------------------------------------------------------

    def problems(self) -> tuple[Problem, ...]:
        """Everything not served as written: bad files, and objects translation did not accept."""
        return self._problems

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
                    messages.SourceProblem(file=p.file, line=p.line, reason=p.reason) for p in self._problems
                ],
            )
        ]

    async def wait_applied(self, count: int) -> None:
        """Wait until at least ``count`` folder states have been applied (tests, benchmarks)."""
        while self.applied < count:
            await self._changed.wait()

    # the pipeline ----------------------------------------------------------------------------

    def apply(self, state: FolderState) -> None:
        """Translate one folder state and publish the snapshots of the groups that changed."""
        started = time.perf_counter()
        result = self.translator.translate(state.inputs)
        problems = list(state.problems)
        for st in result.model.statuses:
            bad = [c for c in st.conditions if not c.status]
            if not bad:
                continue
            file, line = state.origins.get((st.ref.kind, st.ref.namespace, st.ref.name), ("", 0))
            reason = "; ".join(f"{c.type}={c.reason}: {c.message}" if c.message else c.reason for c in bad)
            problems.append(Problem(file, line, f"{st.ref.kind} {st.ref.namespace}/{st.ref.name}: {reason}"))
        for ns, name in sorted(result.changed):
            res = result.xds.get((ns, name))
            if res is None:
                self.cache.clear_snapshot(name)
                log.info("proxy group removed", group=name, namespace=ns)
                continue
            try:
                snap = Snapshot(res.by_type(), version=f"g{state.generation}")
            except XdsError as e:
                problems.append(Problem("", 0, f"group {name}: snapshot rejected, serving the last one: {e}"))
                log.error("snapshot rejected", group=name, error=str(e))
                continue
            self.cache.set_snapshot(name, snap)
            log.info("snapshot set", group=name, version=snap.version)
        for p in problems:
            if p not in self._problems:
                log.warning("not served as written", problem=str(p))
        self._state = state
        self._problems = tuple(problems)
        self.applied += 1
        self._changed.set()
        self._changed = anyio.Event()
        log.info(
            "folder applied",
            generation=state.generation,
            groups=len(result.xds),
            problems=len(problems),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve xDS and the admin API and follow the folder, until cancelled. Reports started
        once the first folder state is published and both servers listen."""
        xhost, xport = _split(self.options.xds_address)
        ahost, aport = _split(self.options.admin_address)
        watch = self.provider.watch()
        first = await watch.__anext__()  # a missing folder fails here, before anything listens
        self.apply(first)
        async with anyio.create_task_group() as tg:
            self.xds_port = await tg.start(self.ads.serve, xhost, xport)
            self.admin_port = await tg.start(self.admin.serve, ahost, aport)
            if self.health is not None:
                await tg.start(self.health.serve)
            log.info(
                "standalone serving",
                folder=str(self.options.directory),
                xds=f"{xhost}:{self.xds_port}",
                admin=f"{ahost}:{self.admin_port}",
            )
            task_status.started()
            try:
                async for state in watch:
                    try:
                        self.apply(state)
                    except Exception as e:  # keep serving the last snapshots; say why
                        log.exception("translation failed; serving the last snapshots")
                        self._state = state
                        self._problems = (*state.problems, Problem("", 0, f"translation failed: {e!r}"))
            finally:
                await watch.aclose()
