"""An httpx transport that loses requests or answers on the way, in front of a real server.

It stands for the network between tsgw and its control plane, so a test can make a
non-idempotent call fail in each way that matters for retrying it, against the real server
(Headscale over HTTP) or the fake of Tailscale's API (through ``httpx.ASGITransport``):

* ``refuse``: the request never leaves (``httpx.ConnectError``); the server sees nothing.
* ``drop``: the server receives and applies the request, the connection drops before the
  answer arrives (``httpx.RemoteProtocolError``, as when the peer closes mid-response).
* ``timeout``: the server applies the request, the answer comes too late (``httpx.ReadTimeout``).
* ``late``: the client times out at once (``httpx.ReadTimeout``) and the server applies the
  request only later, right after the next request to the same method and path was answered
  (a slow request overtaken by its retry).
* an HTTP status (``502``): the server applies the request, and a gateway in front of it
  answers that status instead of the server's answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

__all__ = ["LossyTransport"]


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    fault: str | int
    remaining: int


class LossyTransport(httpx.AsyncBaseTransport):
    """Forwards to ``inner``, except for the requests :meth:`lose` picked."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self._faults: list[_Fault] = []
        self._late: list[httpx.Request] = []
        self.lost: list[str] = []
        """``"<fault> <method> <path>"`` of every request this transport interfered with."""
        self.late_statuses: list[int] = []
        """The server's statuses for the ``late`` requests it received (nobody else sees them)."""

    def lose(self, method: str, path: str, fault: str | int = "drop", *, times: int = 1) -> None:
        """Interfere with the next ``times`` requests of ``method`` whose path matches ``path``."""
        if fault not in ("refuse", "drop", "timeout", "late") and not isinstance(fault, int):
            raise ValueError(f"unknown fault {fault!r}")
        self._faults.append(_Fault(method, re.compile(path), fault, times))

    def _pick(self, request: httpx.Request) -> str | int | None:
        for f in self._faults:
            if f.remaining > 0 and f.method == request.method and f.path.fullmatch(request.url.path):
                f.remaining -= 1
                self.lost.append(f"{f.fault} {request.method} {request.url.path}")
                return f.fault
        return None

    async def _forward(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        await response.aclose()
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self._pick(request)
        if fault == "refuse":
            raise httpx.ConnectError("connection refused (injected)", request=request)
        if fault == "late":
            await request.aread()
            self._late.append(request)
            raise httpx.ReadTimeout("read timed out (injected)", request=request)
        if fault is None:
            response = await self._forward(request)
            await self._apply_late(request)
            return response
        answer = await self._forward(request)  # the server applies it; the client never hears
        if fault == "drop":
            raise httpx.RemoteProtocolError("peer closed connection (injected)", request=request)
        if fault == "timeout":
            raise httpx.ReadTimeout("read timed out (injected)", request=request)
        assert isinstance(fault, int)
        del answer
        return httpx.Response(fault, json={"message": "bad gateway (injected)"}, request=request)

    async def _apply_late(self, after: httpx.Request) -> None:
        for late in [r for r in self._late if (r.method, r.url.path) == (after.method, after.url.path)]:
            self._late.remove(late)
            self.late_statuses.append((await self._forward(late)).status_code)

    async def aclose(self) -> None:
        await self.inner.aclose()
