"""A TCP echo server in a thread, for "bytes crossed the network and came back" tests."""

from __future__ import annotations

import socket
import threading


class EchoServer:
    """Echoes every byte back on each connection; bind it inside a namespace with ``ns.entered()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = socket.create_server((host, port))
        self.port = int(self._sock.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._serve, name=f"echo-{self.port}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self._sock.close()
