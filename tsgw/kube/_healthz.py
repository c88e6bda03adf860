"""``/healthz``, ``/readyz`` and ``/metrics`` over a tiny HTTP/1.1 server on anyio.

Checks aggregate as controller-runtime's ``pkg/healthz``: success answers ``ok``; a failure
answers 500 with the verbose list (``[+]name ok`` / ``[-]name failed: reason withheld``);
``?verbose`` lists every check; ``?exclude=name`` skips one; ``/healthz/<name>`` runs one.
Liveness must not depend on leadership: a standby is healthy.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import SocketStream
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

__all__ = ["Checker", "HealthServer", "ping"]

Checker = Callable[[], Awaitable[bool] | bool]
"""A check: returns (or resolves to) True when healthy; raising counts as failing."""


def ping() -> bool:
    """Always healthy (the liveness default)."""
    return True


async def _run_check(check: Checker) -> bool:
    try:
        result = check()
        if isinstance(result, bool):
            return result
        return bool(await result)
    except Exception:
        return False


class HealthServer:
    """Serves the probe endpoints (unless ``probes`` is False) and ``/metrics`` (when
    ``metrics``) on one listener."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: bool = True,
        probes: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.probes = probes
        self.registry = registry if registry is not None else REGISTRY
        """What ``/metrics`` exposes. Defaults to ``prometheus_client.REGISTRY`` (the process's)."""
        self.healthz: dict[str, Checker] = {"ping": ping}
        self.readyz: dict[str, Checker] = {"ping": ping}
        self.bound_port: int | None = None

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        async with listener:
            self.bound_port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
            task_status.started(self.bound_port)
            await listener.serve(self._handle)

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            data = b""
            with anyio.move_on_after(10):
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    try:
                        data += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            if len(parts) < 2:
                return
            status, ctype, body = await self.respond(parts[1])
            head = (
                f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            try:
                await stream.send(head.encode() + body)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    async def respond(self, target: str) -> tuple[int, str, bytes]:
        url = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        path = url.path.rstrip("/")
        if path == "/metrics" and self.metrics:
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        for prefix, checks in (("/healthz", self.healthz), ("/readyz", self.readyz)) if self.probes else ():
            if path == prefix or path.startswith(prefix + "/"):
                return await self._aggregate(checks, path[len(prefix) + 1 :], query)
        return 404, "text/plain", b"404 page not found\n"

    async def _aggregate(
        self, checks: dict[str, Checker], one: str, query: dict[str, list[str]]
    ) -> tuple[int, str, bytes]:
        if one:
            if one not in checks:
                return 404, "text/plain", b"404 page not found\n"
            ok = await _run_check(checks[one])
            return (
                (200, "text/plain", b"ok")
                if ok
                else (500, "text/plain", f"[-]{one} failed: reason withheld\n".encode())
            )
        excluded = set(query.get("exclude", []))
        lines = []
        failed = False
        for name, check in checks.items():
            if name in excluded:
                lines.append(f"[+]{name} excluded: ok")
                continue
            if await _run_check(check):
                lines.append(f"[+]{name} ok")
            else:
                failed = True
                lines.append(f"[-]{name} failed: reason withheld")
        if failed:
            return 500, "text/plain", ("\n".join(lines) + "\nhealthz check failed\n").encode()
        if "verbose" in query:
            return 200, "text/plain", ("\n".join(lines) + "\nhealthz check passed\n").encode()
        return 200, "text/plain", b"ok"
