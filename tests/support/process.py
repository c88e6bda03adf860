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
from collections.abc import Callable, Mapping, Sequence
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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
