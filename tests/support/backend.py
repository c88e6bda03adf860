"""A tiny HTTP backend on loopback for proxy tests: answers with its own name.

``GET /anything`` → 200, body ``<name>``; ``GET /slow?ms=N`` answers after N milliseconds (for
"in-flight requests survive an update" tests). It counts the requests it served and those in
progress. Runs in a
thread so it works under sync and async tests alike.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlparse


class HttpBackend:
    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.requests = 0
        self.in_flight = 0
        self._lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: with Nagle's algorithm the body waits for the
            # proxy's delayed ACK of the headers (40 ms on Linux) on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                url = urlparse(self.path)
                with backend._lock:
                    backend.in_flight += 1
                if url.path == "/slow":
                    ms = int(parse_qs(url.query).get("ms", ["500"])[0])
                    time.sleep(ms / 1000)
                with backend._lock:
                    backend.requests += 1
                    backend.in_flight -= 1
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(body)))
                self.send_header("x-backend", backend.name)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"backend-{name}", daemon=True
        )

    def start(self) -> HttpBackend:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> HttpBackend:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
