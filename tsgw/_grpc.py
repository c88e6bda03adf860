"""The one way tsgw serves a grpclib :class:`~grpclib.server.Server` and learns the port it bound
(the xDS server, the admin API, the Envoy Gateway extension). A leaf like ``tsgw._address``: it
imports nothing of tsgw, so the libraries may share it.

grpclib 0.4 keeps the listening sockets in a private attribute (``Server._server``) and has no
public accessor for them. So the sockets are bound here, the way asyncio's ``create_server`` binds
a host (every address ``getaddrinfo`` gives for a passive TCP socket, ``SO_REUSEADDR``, IPv6
sockets IPv6-only), and each is handed to ``Server.start(sock=...)``, a public parameter: one
Server per socket, all serving the same handlers. Port 0 on a host of several addresses binds
every address to the port the first one got (asyncio would give each its own), so the one port
reported is right for each.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection
from typing import Any

import anyio
from anyio.abc import TaskStatus
from grpclib.server import Server

__all__ = ["bind_tcp", "serve"]


async def bind_tcp(host: str, port: int) -> list[socket.socket]:
    """Bound, not yet listening TCP sockets for every address of ``host``, all on one port (the
    first's, when ``port`` is 0). Raises OSError (closing what it bound) when one cannot be bound."""
    infos = await anyio.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as e:
                raise OSError(e.errno, f"cannot bind {address[0]} port {address[1]}: {e.strerror}") from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(f"{host!r} has no address to listen on")
    return sockets


async def serve(
    handlers: Collection[Any],
    host: str,
    port: int,
    *,
    codec: Any = None,
    closing: Callable[[], None] | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handlers`` on every address of ``host`` until cancelled; reports the bound port
    through ``task_status``. ``codec`` is grpclib's (None: its protobuf codec). ``closing`` runs
    once the servers stopped accepting and cancelled their handlers, before waiting for them to
    end (grpclib leaves the connections themselves open)."""
    sockets = await bind_tcp(host, port)
    servers: list[Server] = []
    try:
        for sock in sockets:
            server = Server(handlers, codec=codec)
            await server.start(sock=sock)
            servers.append(server)
        task_status.started(int(sockets[0].getsockname()[1]))
        await anyio.sleep_forever()
    finally:
        for sock in sockets[len(servers) :]:
            sock.close()  # never handed to a server
        for server in servers:
            server.close()
        if closing is not None:
            closing()
        with anyio.CancelScope(shield=True):
            for server in servers:
                await server.wait_closed()
