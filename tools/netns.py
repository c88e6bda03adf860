"""Private network namespaces: the test hosts of this project.

A :class:`NetNS` holds ``lo`` and a veth pair whose two ends both stay inside it (tailscaled pauses
its control client while no non-loopback interface is up, and a ``dummy`` interface cannot be
created here). Nothing routes out of it, so whatever runs inside can reach only what runs inside.

The test process (or `just run`) stays in the host namespace and reaches a server inside through
:meth:`NetNS.forward`: a loopback port on the host whose connections are opened from inside the
namespace (``setns(2)`` on a helper thread), like ``kubectl port-forward``. So no interface ever
links a namespace to the host.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()
_LIVE: set[NetNS] = set()
PRIVATE_PORT_BASE = 20000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def _entered(path: str) -> Iterator[None]:
    """Run the body with this thread inside the namespace at ``path``."""
    with open("/proc/thread-self/ns/net") as home, open(path) as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


class Namespace:
    """An existing named network namespace, and the ways this process reaches into it.

    :class:`NetNS` makes one of its own; the Kubernetes test bed attaches to the namespaces of
    its topology with this class directly.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._forwarders: list[_Forwarder] = []

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def exec_argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(self, argv: Sequence[str | os.PathLike[str]], **kw: object) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it (raises on a non-zero exit)."""
        return subprocess.run(self.exec_argv(argv), check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]

    def entered(self) -> contextlib.AbstractContextManager[None]:
        """Run a block with this thread inside the namespace: sockets made there stay there.

        An in-process server bound inside the block listens inside the namespace, while its
        accept loop may run on any thread.
        """
        return _entered(self.path)

    def connect(self, host: str, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP connection opened from inside the namespace, usable from this process."""
        with _entered(self.path):
            return socket.create_connection((host, port), timeout=timeout)

    def forward(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose ``host:port`` inside the namespace on a fresh host loopback port; returns it."""
        fw = _Forwarder(self, host, port)
        self._forwarders.append(fw)
        return fw.port

    def expose_host_port(self, host_port: int, ns_port: int = 0) -> int:
        """Make the host's ``127.0.0.1:host_port`` reachable inside as ``127.0.0.1:ns_port``.

        Returns the port inside the namespace (``ns_port``, or a free one when 0).
        """
        fw = _Forwarder(self, "127.0.0.1", host_port, inward=False, listen_port=ns_port)
        self._forwarders.append(fw)
        return fw.port

    def close_forward(self, port: int) -> None:
        """Close the forward listening on ``port`` (as :meth:`forward` or
        :meth:`expose_host_port` returned it) and its open connections."""
        for fw in [f for f in self._forwarders if f.port == port]:
            fw.close()
            self._forwarders.remove(fw)

    def close_forwards(self) -> None:
        """Close every forward made through this namespace (and their open connections)."""
        for fw in self._forwarders:
            fw.close()
        self._forwarders.clear()

    def pids(self) -> list[int]:
        """Processes whose network namespace is this one."""
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class NetNS(Namespace):
    """A namespace of its own with ``lo`` and an internal veth pair (``v0`` holds ``address``)."""

    def __init__(self, prefix: str = "tsgw", address: str = "10.213.0.1/24") -> None:
        super().__init__(f"{prefix}-{os.getpid()}-{next(_counter)}")
        self.address = address
        self._ports = itertools.count(PRIVATE_PORT_BASE)
        _ip("netns", "add", self.name)
        _LIVE.add(self)
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
            _ip("-n", self.name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
            _ip("-n", self.name, "addr", "add", address, "dev", "v0")
            _ip("-n", self.name, "link", "set", "v0", "up")
            _ip("-n", self.name, "link", "set", "v1", "up")
        except subprocess.CalledProcessError:
            self.delete()
            raise

    @property
    def ip(self) -> str:
        """The namespace's own non-loopback address (without the prefix length)."""
        return self.address.split("/")[0]

    def port(self) -> int:
        """A TCP port for a program inside this namespace that must be told its port before it
        binds it (containerboot's health and proxy listeners).

        Race-free where picking a free host port is not: the namespace is this process's own, so
        only programs started in it bind here; the port lies below the kernel's ephemeral range
        (``ip_local_port_range`` is per namespace and left at its default, 32768 up), so no
        ``connect()`` or ``bind(0)`` in here is given it; and each call returns a new one,
        counting up from 20000, above the fixed ports the helpers use in here (Headscale 8080,
        SOCKS5 1080 up, testcontrol 8080/3340/3478/9912).
        """
        port = next(self._ports)
        if port >= 32768:
            raise RuntimeError(f"{self.name}: out of private ports")
        return port

    def delete(self) -> None:
        """Kill whatever still runs inside, then remove the namespace."""
        self.close_forwards()
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "delete", self.name)
        _LIVE.discard(self)


class _Forwarder:
    """Accepts on one side and splices each connection to a target on the other side.

    Forward (``inward=True``): listens on host loopback, connects inside the namespace.
    Reverse (``inward=False``): listens inside the namespace on ``listen_port``, connects to
    the host's loopback, so a program in the namespace can call a server of the test process.
    """

    def __init__(
        self, ns: Namespace, host: str, port: int, *, inward: bool = True, listen_port: int = 0
    ) -> None:
        self.ns, self.host, self.target, self.inward = ns, host, port, inward
        if inward:
            self.listener = socket.create_server(("127.0.0.1", 0))
        else:
            with ns.entered():
                self.listener = socket.create_server(("127.0.0.1", listen_port))
        self.port = int(self.listener.getsockname()[1])
        self._closed = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"fwd-{ns.name}-{port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._closed:  # accepted while closing: refuse it, as a closed port would
                client.close()
                return
            try:
                if self.inward:
                    upstream = self.ns.connect(self.host, self.target)
                else:
                    upstream = socket.create_connection((self.host, self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            remaining = [2]  # directions still open; the last one to finish closes both sockets
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, remaining), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, remaining: list[int]) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                with self._lock:
                    self._conns.difference_update((src, dst))
                src.close()
                dst.close()

    def close(self) -> None:
        self._closed = True
        # close() alone leaves the socket listening while another thread is blocked in
        # accept() on it (Linux); shutdown() wakes that thread and stops the listening.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


def live_namespaces() -> list[str]:
    """Namespaces this process made and has not deleted (a non-empty list at the end is a leak)."""
    return [ns.name for ns in _LIVE]


def delete_all() -> list[str]:
    leaked = live_namespaces()
    for ns in list(_LIVE):
        ns.delete()
    return leaked
