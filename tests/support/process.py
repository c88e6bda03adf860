"""Start real programs for tests and make sure none outlives the test run.

Every fixture that starts a binary goes through :class:`Process`: it runs in its own process
group (so a program's children die with it), its output goes to a log file whose tail is shown
when it fails to become ready, and :func:`reap_all` at the end of the session kills whatever a
crashed test left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

_LIVE: set[Process] = set()


class NotReady(RuntimeError):
    """A process did not become ready in time, or exited first; carries the log's tail."""


class Process:
    """One started program with its log; use :meth:`stop` (or :func:`reap_all`) to end it.

    ``netns`` runs it inside that network namespace (``ip netns exec``), the way the test bed
    keeps tailscaled and Headscale off every network but the ones it made.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        netns: str | None = None,
    ) -> None:
        self.name = name
        self.log = log
        args = [str(a) for a in argv]
        if netns:
            args = ["ip", "netns", "exec", netns, *args]
        self.argv = args
        log.parent.mkdir(parents=True, exist_ok=True)
        self._logfh = log.open("ab")
        self.popen = subprocess.Popen(
            args,
            stdout=self._logfh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, check: Callable[[], bool], timeout: float = 30.0, what: str = "ready") -> None:
        """Poll ``check`` until it returns true; fail early, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise NotReady(
                    f"{self.name} exited with {self.popen.returncode} before {what}; log {self.log}:\n"
                    f"{self.tail()}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > deadline:
                raise NotReady(
                    f"{self.name} not {what} after {timeout:.0f} s; log {self.log}:\n{self.tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process group, wait, then SIGKILL it; returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        # Children that ignored the signal (same group) still go.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._logfh.close()
        _LIVE.discard(self)
        return self.popen.returncode

    def kill(self) -> None:
        """End it abruptly (SIGKILL), as a crash would."""
        self.stop(timeout=5, sig=signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.popen.pid} alive={self.alive()}>"


def reap_all() -> list[str]:
    """Stop every process still live; returns their names (a non-empty list is a leak)."""
    leaked = [p.name for p in list(_LIVE)]
    for p in list(_LIVE):
        p.stop(timeout=5)
    return leaked


_PORT_LOCKS = Path("/tmp/tsgw-ports")
_PORT_FLOOR = 20000
_held_ports: dict[int, int] = {}  # port -> fd of its lock file, open for this process's life


def ephemeral_ports() -> range:
    """The kernel's ephemeral range (``net.ipv4.ip_local_port_range``) of the calling thread's
    network namespace: the ports ``connect()`` and ``bind(0)`` are given."""
    lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(lo, hi + 1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` for a program that must be told its port before it binds it.

    Prefer what needs no pick: bind 0 and keep the socket (in-process servers), bind 0 and read
    the port back (``AdsServer.serve``, Envoy's admin address file), or a private namespace
    (:meth:`tools.netns.NetNS.port`). Picking by ``bind(0)`` and closing, as this did, hands out a
    port of the ephemeral range, which any ``connect()`` or ``bind(0)`` on the machine may be
    given before the program binds it: a clean-clone ``./justw test`` failed so (containerboot's
    health port, "address already in use"). So this picks below the ephemeral range, where the
    kernel never hands a port out by itself, skips one that is in use now, and takes an
    ``flock`` on ``/tmp/tsgw-ports/PORT`` for the rest of this process, so no other test process
    (any worktree, any run, any bench) is handed it too. What it cannot exclude is a program
    outside the tests binding that very number; the sites that can retry on EADDRINUSE do.
    """
    import fcntl
    import random

    top = min(ephemeral_ports().start, 65536)
    span = range(_PORT_FLOOR, top) if top - _PORT_FLOOR >= 1000 else range(1024, top)
    _PORT_LOCKS.mkdir(mode=0o1777, parents=True, exist_ok=True)
    start = random.randrange(len(span))
    for i in range(len(span)):
        port = span[(start + i) % len(span)]
        if port in _held_ports:
            continue
        fd = os.open(_PORT_LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                os.close(fd)  # in use (or lingering) now: not this one
                continue
        _held_ports[port] = fd
        return port
    raise RuntimeError(f"no free TCP port in {span} on {host}")


@contextlib.contextmanager
def refusing_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses connections for the block: bound by this process, never listening.

    Race-free where "a free port, closed again" is not: nothing else can bind it meanwhile and
    answer (a connection to a bound socket that does not listen is reset: ECONNREFUSED).
    """
    with socket.socket() as s:
        s.bind((host, 0))
        yield int(s.getsockname()[1])


def in_use_error(log: Path) -> bool:
    """Whether a program's log says a bind failed because the address was in use (EADDRINUSE):
    where a port must still be picked before the program binds it, its starter retries on this."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return False
    return "address already in use" in text.lower()


BIND_ATTEMPTS = 3
"""How often a starter that picks its program's ports tries again after EADDRINUSE."""


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def http_ok(url: str, timeout: float = 1.0, context: object | None = None) -> bool:
    """True when a GET of ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # type: ignore[arg-type]
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
