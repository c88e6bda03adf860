"""The bed's test backend: answers HTTP, gRPC and raw TCP with its pod name.

Run by the image ``bed.test/backend`` (see ``_images.py``). Ports come from the environment:
``HTTP_PORT`` (8080), ``GRPC_PORT`` (50051), ``TCP_PORT`` (9000), ``PROXY_PORT`` (9001); the
name from ``POD_NAME``, else ``HOSTNAME`` (the kubelet sets it to the pod name).

- HTTP: ``GET /`` → ``<pod name>\\n``; ``/healthz`` → 200 unless the file ``/tmp/unhealthy``
  exists (so a test can make a liveness probe fail from inside the container).
- gRPC: ``/bed.Echo/Name`` returns the pod name as raw bytes; ``/grpc.health.v1.Health/Check``
  answers SERVING. A pass-through codec, so no generated code is needed.
- TCP: writes ``<pod name>\\n`` and closes.
- PROXY: reads a PROXY protocol v2 header (what a proxy with ``proxyProtocol`` sends first),
  writes ``<pod name> <source address> <source port>\\n`` (``- -`` for a LOCAL or non-IP
  header) and closes; a connection without a valid header gets ``<pod name> no-proxy-header``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Server, Stream

NAME = os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or "unknown"


class RawCodec(CodecBase):
    """Messages are bytes as they are on the wire: nothing to encode or decode."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


class _Service:
    async def name(self, stream: Stream[bytes, bytes]) -> None:
        await stream.recv_message()
        await stream.send_message(NAME.encode())

    async def check(self, stream: Stream[bytes, bytes]) -> None:
        await stream.recv_message()
        await stream.send_message(b"\x08\x01")  # HealthCheckResponse{status: SERVING}

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/bed.Echo/Name": Handler(self.name, Cardinality.UNARY_UNARY, bytes, bytes),
            "/grpc.health.v1.Health/Check": Handler(self.check, Cardinality.UNARY_UNARY, bytes, bytes),
        }


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else "/"
        status, body = "200 OK", f"{NAME}\n"
        if path.startswith("/headers"):
            # The request's headers, one per line, after the name: what a proxy in front added.
            body += request.split(b"\r\n", 1)[1].decode(errors="replace").strip() + "\n"
        if path.startswith("/healthz") and os.path.exists("/tmp/unhealthy"):  # noqa: ASYNC240
            status, body = "500 Internal Server Error", "unhealthy\n"
        data = body.encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(data)}\r\n"
            f"X-Pod-Name: {NAME}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def _tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(f"{NAME}\n".encode())
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def parse_proxy_v2(head: bytes) -> tuple[str, int] | None:
    """The source (address, port) of a PROXY v2 header of 16 + length bytes; ("-", 0) for a
    LOCAL command or an address family other than IPv4/IPv6; None when it is not a header."""
    if len(head) < 16 or not head.startswith(PROXY_V2_SIGNATURE) or head[12] >> 4 != 2:
        return None
    command, family = head[12] & 0x0F, head[13] >> 4
    body = head[16:]
    if command == 0 or family not in (1, 2):
        return "-", 0
    size = 4 if family == 1 else 16
    if len(body) < 2 * size + 4:
        return None
    addr = ipaddress.ip_address(body[:size])
    return str(addr), int.from_bytes(body[2 * size : 2 * size + 2], "big")


async def _proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readexactly(16)
        if head.startswith(PROXY_V2_SIGNATURE):
            head += await reader.readexactly(int.from_bytes(head[14:16], "big"))
        src = parse_proxy_v2(head)
        writer.write(f"{NAME} {src[0]} {src[1]}\n".encode() if src else f"{NAME} no-proxy-header\n".encode())
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http = await asyncio.start_server(_http, "0.0.0.0", int(os.environ.get("HTTP_PORT", "8080")))
    tcp = await asyncio.start_server(_tcp, "0.0.0.0", int(os.environ.get("TCP_PORT", "9000")))
    proxy = await asyncio.start_server(_proxy, "0.0.0.0", int(os.environ.get("PROXY_PORT", "9001")))
    grpc = Server([_Service()], codec=RawCodec())
    await grpc.start("0.0.0.0", int(os.environ.get("GRPC_PORT", "50051")))
    print(f"backend {NAME} serving", flush=True)
    await stop.wait()
    http.close()
    tcp.close()
    proxy.close()
    grpc.close()
    await grpc.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
