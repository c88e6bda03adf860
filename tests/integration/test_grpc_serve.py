"""``tsgw._grpc.serve``: the one way tsgw serves grpclib and reports the bound port, without
grpclib's private ``Server._server`` (the sockets are ours, handed to ``Server.start(sock=)``)."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Stream

from tsgw._grpc import bind_tcp, serve

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
_PATH = "/test.Echo/Echo"


class _Bytes(CodecBase):  # type: ignore[misc]
    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


class _Echo:
    def __mapping__(self) -> dict[str, Handler]:
        return {_PATH: Handler(self._echo, Cardinality.UNARY_UNARY, bytes, bytes)}

    async def _echo(self, stream: Stream[Any, Any]) -> None:
        await stream.send_message(b"echo:" + await stream.recv_message())


async def _call(host: str, port: int) -> bytes:
    channel = Channel(host, port, codec=_Bytes())
    try:
        async with channel.request(_PATH, Cardinality.UNARY_UNARY, bytes, bytes) as stream:
            await stream.send_message(b"hi", end=True)
            reply: bytes = await stream.recv_message()
            return reply
    finally:
        channel.close()


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_it_reports_the_port_it_bound_serves_there_and_stops_listening_when_cancelled() -> None:
    closing_saw_refusal: list[bool] = []
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve(
                [_Echo()],
                "127.0.0.1",
                0,
                codec=_Bytes(),
                closing=lambda: closing_saw_refusal.append(_refused("127.0.0.1", port)),
                task_status=task_status,
            )
        )
        assert port != 0
        assert await _call("127.0.0.1", port) == b"echo:hi"
        tg.cancel_scope.cancel()
    assert closing_saw_refusal == [True]  # `closing` runs once nothing accepts any more
    assert _refused("127.0.0.1", port)


async def test_a_taken_port_fails_with_the_address_and_leaves_nothing_bound() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1 port {taken}: Address already in use"):
            await serve([_Echo()], "127.0.0.1", taken)


async def test_port_0_binds_every_address_of_a_host_to_one_port() -> None:
    families = {info[0] for info in socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)}
    if families != {socket.AF_INET, socket.AF_INET6}:
        pytest.skip("localhost does not resolve to both 127.0.0.1 and ::1 here")
    sockets = await bind_tcp("localhost", 0)
    try:
        assert len(sockets) == 2
        assert len({s.getsockname()[1] for s in sockets}) == 1
    finally:
        for s in sockets:
            s.close()
