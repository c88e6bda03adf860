"""The real Prometheus (Debian's build, from `just testbin`) on loopback, and promtool.

:class:`Prometheus` runs one server on a given configuration: its own data directory, the web
API on a loopback port it is told (retried on EADDRINUSE), ready when ``/-/ready`` answers.
Its HTTP API is read with :meth:`query` (an instant query's result vector), :meth:`targets`
and :meth:`alerts`.

Debian's Prometheus is built without Kubernetes service discovery (``kubernetes_sd_configs`` is
an unknown field there): :func:`as_file_sd` turns a configuration that uses it into one whose
jobs read their targets from files, each target labelled with the ``__meta_kubernetes_*``
labels Kubernetes discovery would give it, so the configuration's own relabelling decides which
targets are kept.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.process import BIND_ATTEMPTS, NotReady, Process, free_port, http_ok, in_use_error
from tools.netns import Namespace
from tools.testbin import bin_path


def promtool(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS`` (the pinned one); its exit code and output, for the test to judge."""
    return subprocess.run(
        [str(bin_path("promtool")), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def as_file_sd(
    config: Mapping[str, Any], targets: Mapping[str, list[dict[str, Any]]], folder: Path
) -> dict[str, Any]:
    """``config`` with every job's ``kubernetes_sd_configs`` replaced by a file of target groups
    (``targets[job_name]``: ``{"targets": [...], "labels": {...}}`` each), written into ``folder``."""
    out = copy.deepcopy(dict(config))
    folder.mkdir(parents=True, exist_ok=True)
    for job in out.get("scrape_configs") or []:
        if job.pop("kubernetes_sd_configs", None) is None:
            continue
        path = folder / f"{job['job_name']}.json"
        path.write_text(json.dumps(targets.get(job["job_name"], [])))
        job["file_sd_configs"] = [{"files": [str(path)], "refresh_interval": "1s"}]
    return out


class Prometheus:
    """One Prometheus server; :meth:`stop` it (the session's reaper kills a forgotten one)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        workdir: Path,
        *,
        files: Mapping[str, str] = {},
        netns: Namespace | None = None,
    ) -> None:
        """``files``: written beside the configuration (rule files it names relatively).
        ``netns``: run it inside that network namespace (a test bed's node, which routes to
        every pod), on that namespace's loopback; :attr:`url` is then a forward from this
        host's loopback into it (``Namespace.forward``)."""
        self.netns = netns
        self._forward: int | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (workdir / name).write_text(text)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        for attempt in range(1, BIND_ATTEMPTS + 1):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            if netns is not None:
                self._close_forward()
                self._forward = netns.forward(self.port)
                self.url = f"http://127.0.0.1:{self._forward}"
            log = workdir / f"prometheus.{attempt}.log"
            self.process = Process(
                "prometheus",
                [
                    bin_path("prometheus"),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=info",
                ],
                log,
                netns=netns.name if netns is not None else None,
            )
            try:
                self.process.wait_ready(lambda: http_ok(f"{self.url}/-/ready"), timeout=60, what="/-/ready")
                return
            except NotReady:
                self.process.stop(timeout=10)
                if attempt == BIND_ATTEMPTS or not in_use_error(log):
                    raise

    def _close_forward(self) -> None:
        if self.netns is not None and self._forward is not None:
            self.netns.close_forward(self._forward)
            self._forward = None

    def stop(self) -> None:
        self.process.stop(timeout=10)
        self._close_forward()

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        if body.get("status") != "success":
            raise AssertionError(f"GET {path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now: ``[{"metric": {...}, "value": [t, "v"]}]``."""
        data = self._get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        """The range vector of ``expr`` between two POSIX times: ``[{"metric", "values"}]``."""
        data = self._get("/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step))
        assert data["resultType"] == "matrix", data
        return list(data["result"])

    def targets(self) -> dict[str, Any]:
        """``{"activeTargets": [...], "droppedTargets": [...]}``."""
        return dict(self._get("/api/v1/targets"))

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing, with their labels and state."""
        return list(self._get("/api/v1/alerts")["alerts"])

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Poll ``check()`` (every 0.2 s, a scrape interval being 1 s) until truthy; its value."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise NotReady(f"prometheus exited while waiting for {what}:\n{self.process.tail()}")
            value = check()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout} s; last value {value!r}")
