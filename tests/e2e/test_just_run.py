"""`just run` as a user runs it (``python -m tools.standalone``, what the recipe calls): what it
prints works, and Ctrl-C leaves nothing behind.

It binds the fixed ports of examples/standalone and the README (18000, 9911, 10000, 18081,
18082, 19000), as a user's `just run` does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.standalone import ROOT, get, wait_until
from tests.support.process import Process

pytestmark = pytest.mark.e2e


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _fetch(port: int, path: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return str(r.read().decode())
    except OSError as e:
        return f"error: {e}"


def test_just_run_routes_fails_over_reaches_the_tailnet_and_stops_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "just-run.log"
    # A short run directory: tailscaled's unix socket path must fit in 108 bytes.
    run_dir = Path(tempfile.mkdtemp(prefix="tsgw-jr-"))
    run = Process(
        "just-run",
        [sys.executable, "-m", "tools.standalone"],
        log,
        env={**os.environ, "TSGW_RUN_DIR": str(run_dir)},
        cwd=ROOT,
    )
    try:
        run.wait_ready(lambda: "Ctrl-C stops everything." in log.read_text(), timeout=120, what="started")
        text = log.read_text()
        assert "(no tailnet" not in text  # root, and the test bed's binaries are built
        # The commands it prints work as it says.
        assert "curl --haproxy-protocol http://127.0.0.1:10000/" in text
        assert wait_until(lambda: get(10000, "/") == (200, "primary: /\n"))
        m = re.search(r"curl http://127\.0\.0\.1:(\d+)/", text)
        assert m is not None
        egress = int(m.group(1))
        assert wait_until(lambda: _fetch(egress, "/over") == "tailnet-device: /over\n", timeout=60)
        status = subprocess.run(
            [sys.executable, "-m", "tsgw", "status"], capture_output=True, text=True, timeout=30, cwd=ROOT
        ).stdout
        assert "web-0" in status
        assert "tailnet-echo-0" in status
        pid = re.search(r"kill (\d+);", text)
        assert pid is not None
        os.kill(int(pid.group(1)), signal.SIGTERM)  # the failover command it prints
        assert wait_until(lambda: get(10000, "/") == (200, "standby: /\n"))
    finally:
        if run.alive():
            os.kill(run.pid, signal.SIGINT)  # Ctrl-C
        deadline = time.monotonic() + 60
        while run.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = run.alive()
        run.stop()
    shutil.rmtree(run_dir, ignore_errors=True)
    assert not alive, run.tail()
    assert "stopped everything" in log.read_text()
    ns = re.search(r"in namespace (\S+)", log.read_text())
    assert ns is not None
    assert ns.group(1) not in _namespaces()  # its tailnet namespace is gone
    assert get(10000, "/")[0] == 0  # Envoy is gone too


def test_just_run_refuses_to_start_when_one_of_its_ports_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 9911))  # the admin API's port
        holder.listen()
        env = {**os.environ, "TSGW_RUN_DIR": str(tmp_path)}
        out = subprocess.run(
            [sys.executable, "-m", "tools.standalone", "--no-tailnet"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert "127.0.0.1:9911 (tsgw admin API)" in out.stderr
    assert "in use" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing was started, not even a run directory
