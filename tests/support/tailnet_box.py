"""A tailnet in a box: tsgw's test control server and real tailscaled nodes in one namespace.

The control server is ``tsgw-testcontrol`` (``tests/tailnet/``, built by ``tools/testbin.py``):
tailscale's own ``testcontrol`` package speaking the real control protocol, plus DERP, STUN
and an admin JSON API that models Tailscale Services (VIPs, host approval, one primary host
with failover), device deletion, key expiry and register rate limiting. Headscale has no
Tailscale Services; this is where a real tailscaled hosts ``svc:web`` in tests.
``tests/tailnet/README.md`` says exactly what it models and what it does not.

Everything runs inside one namespace, a :class:`~tests.support.netns.NetNS` of its own or one
the caller gives (the bed's tailnet namespace, a test's own): the server listens on the
namespace's address (control ``:8080``, DERP ``:3340``, STUN ``:3478``) and its admin API on
``127.0.0.1:9912`` inside; the test process reaches the admin API through a forwarded host
port (:attr:`TailnetBox.admin`). Nodes are tailscaled or tailscale's ``containerboot``
(:meth:`TailnetBox.start_proxy`), started and driven like those of
:class:`~tests.support.tailnet.Tailnet`. Tests get the box together with the hosted-API fake
bound to it (:func:`tests.support.boxed_fake.boxed_tailnet`, fixture ``tailnet_box``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.netns import Namespace, NetNS
from tests.support.process import NotReady, Process
from tests.support.tailnet import TAILSCALED_ENV, Node, TailscaledNodes, recv_exact, socks5_connect
from tools.testbin import bin_path

CONTROL_PORT = 8080
DERP_PORT = 3340
STUN_PORT = 3478
ADMIN_PORT = 9912
DOMAIN = "tailnet.test"
"""MagicDNS domain: nodes are ``HOST.tailnet.test``, services ``LABEL.tailnet.test``."""
DEFAULT_TAGS = ("tag:proxy", "tag:k8s", "tag:client")
"""Tags nodes may request (the server's ``-tags``, testcontrol's ``TagOwners``)."""


class AdminError(RuntimeError):
    """The admin API answered an error; carries the status and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class BoxAdmin:
    """Client of the box's admin API (JSON): what tests and the hosted-API fake call.

    Services use the Tailscale API's VIPService shape (``name``, ``addrs``, ``comment``,
    ``annotations``, ``ports``, ``tags``); nodes are addressed by numeric ``id``, stable
    ``nodeId`` or hostname.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=10)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = self._http.request(method, path, json=body)
        data = r.json() if r.content else None
        if r.status_code >= 400:
            raise AdminError(r.status_code, (data or {}).get("message", r.text))
        return data

    def close(self) -> None:
        self._http.close()

    # Tailscale Services
    def put_service(
        self,
        name: str,
        ports: list[str],
        *,
        tags: list[str] | None = None,
        comment: str = "",
        annotations: Mapping[str, str] | None = None,
        addrs: list[str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "ports": ports,
            "tags": tags or [],
            "comment": comment,
            "annotations": dict(annotations or {}),
            "addrs": addrs or [],
        }
        return dict(self._call("PUT", f"/api/services/{name}", body))

    def get_service(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/services/{name}"))

    def list_services(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/services")["vipServices"])

    def delete_service(self, name: str) -> None:
        self._call("DELETE", f"/api/services/{name}")

    def service_hosts(self, name: str) -> list[dict[str, Any]]:
        """Nodes that advertise the service or have an approval decision, with their status."""
        return list(self._call("GET", f"/api/services/{name}/hosts")["hosts"])

    def approve(self, name: str, node: str, approved: bool = True) -> None:
        """An explicit host approval (``approved=False``: an explicit refusal)."""
        self._call("PUT", f"/api/services/{name}/approvals/{node}", {"approved": approved})

    def clear_approval(self, name: str, node: str) -> None:
        """Forget the explicit decision: autoApprovers decide again."""
        self._call("DELETE", f"/api/services/{name}/approvals/{node}")

    def set_auto_approvers(self, services: Mapping[str, list[str]]) -> None:
        """The policy's ``autoApprovers.services`` (replaced as a whole)."""
        self._call("PUT", "/api/auto-approvers", {"services": dict(services)})

    def put_policy(self, tag_owners: Mapping[str, list[str]], services: Mapping[str, list[str]]) -> None:
        """The policy's ``tagOwners`` and ``autoApprovers.services`` (what the fake's policy
        file endpoint forwards)."""
        body = {"tagOwners": dict(tag_owners), "autoApprovers": {"services": dict(services)}}
        self._call("PUT", "/api/policy", body)

    def policy(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/policy"))

    # Auth keys, devices
    def add_key(
        self,
        *,
        tags: tuple[str, ...] = (),
        reusable: bool = False,
        expires: str | None = None,
        key: str = "",
        key_id: str = "",
    ) -> dict[str, Any]:
        """Make an auth key known to the box (``key``/``key_id`` given: the fake's own key;
        empty: the box mints one). The answer holds the secret as ``key``."""
        body = {"id": key_id, "key": key, "tags": list(tags), "reusable": reusable, "expires": expires}
        return dict(self._call("POST", "/api/keys", body))

    def list_keys(self) -> list[dict[str, Any]]:
        """Known keys with ``uses`` and the ``nodes`` (ids) that joined with each."""
        return list(self._call("GET", "/api/keys")["keys"])

    def revoke_key(self, key_id: str) -> None:
        self._call("DELETE", f"/api/keys/{key_id}")

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/nodes")["nodes"])

    def node(self, ref: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/nodes/{ref}"))

    def set_node_tags(self, ref: str, tags: list[str]) -> dict[str, Any]:
        """Replace a node's tags (what the fake's device tags endpoint forwards)."""
        return dict(self._call("PUT", f"/api/nodes/{ref}/tags", {"tags": tags}))

    def delete_node(self, ref: str) -> None:
        self._call("DELETE", f"/api/nodes/{ref}")

    def expire_node(self, ref: str, at: str | None = None) -> dict[str, Any]:
        """Set the node key's expiry (RFC 3339); ``None`` expires it now."""
        return dict(self._call("POST", f"/api/nodes/{ref}/expire", {"keyExpiry": at}))

    def rate_limit_register(
        self, *, reject_next: int = 0, always: bool = False, retry_after: str = ""
    ) -> None:
        self._call(
            "PUT",
            "/api/register-rate-limit",
            {"rejectNext": reject_next, "always": always, "retryAfter": retry_after},
        )

    def register_stats(self) -> dict[str, Any]:
        """``attempts`` and ``rejected`` register requests so far, and the current limit."""
        return dict(self._call("GET", "/api/register-rate-limit"))


class TailnetBox(TailscaledNodes):
    """``tsgw-testcontrol`` plus tailscaled nodes in one namespace; :meth:`close` it."""

    def __init__(
        self,
        workdir: Path,
        ns: Namespace | None = None,
        address: str | None = None,
        *,
        tags: tuple[str, ...] = DEFAULT_TAGS,
        require_known_keys: bool = True,
    ) -> None:
        """Without ``ns``, make a private namespace (deleted by :meth:`close`); with one (the
        bed's tailnet namespace, or one a test made), run there and serve control, DERP and STUN
        on ``address``, an IPv4 address of that namespace (default: a :class:`NetNS`'s own
        address, else 127.0.0.1). Its processes and forwards go on :meth:`close`, the
        namespace stays. The admin API listens on ``127.0.0.1:9912`` inside either way."""
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._owned = NetNS(prefix="tsgw-box") if ns is None else None
        self.ns: Namespace = self._owned or ns  # type: ignore[assignment]
        self.nodes = []
        host = address or (self.ns.ip if isinstance(self.ns, NetNS) else "127.0.0.1")
        self.address = host
        self.url = f"http://{host}:{CONTROL_PORT}"
        self.domain = DOMAIN
        self.server = Process(
            "tsgw-testcontrol",
            [
                bin_path("tsgw-testcontrol"),
                f"-control={host}:{CONTROL_PORT}",
                f"-derp={host}:{DERP_PORT}",
                f"-stun={host}:{STUN_PORT}",
                f"-admin=127.0.0.1:{ADMIN_PORT}",
                f"-domain={DOMAIN}",
                f"-tags={','.join(tags)}",
                f"-require-known-keys={str(require_known_keys).lower()}",
            ],
            self.dir / "tsgw-testcontrol.log",
            netns=self.ns.name,
        )
        try:
            self.server.wait_ready(self._healthy, timeout=30, what="serving its admin API")
        except NotReady:
            self.close()
            raise
        self.admin_url = f"http://127.0.0.1:{self.ns.forward(ADMIN_PORT)}"
        self.admin = BoxAdmin(self.admin_url)

    def _healthy(self) -> bool:
        with self.ns.connect("127.0.0.1", ADMIN_PORT, timeout=0.5) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
            return b" 200 " in s.recv(128).split(b"\r\n", 1)[0]

    def auth_key(self, tags: tuple[str, ...] = (), *, reusable: bool = False) -> str:
        """A fresh auth key the box knows; a node that joins with it gets ``tags``."""
        return str(self.admin.add_key(tags=tags, reusable=reusable)["key"])

    def start_proxy(self, name: str, env: Mapping[str, str], *, serve_config: str | None = None) -> Node:
        """Start tailscale's ``containerboot`` as a proxy replica named ``name`` in the namespace.

        ``env`` is containerboot's environment (e.g. ``tsgw.tailscale.ProxyConfig.env()``);
        ``serve_config`` is written to the file ``TS_SERVE_CONFIG`` names (relative paths are
        taken inside the node's directory). The socket, state directory and tailscaled's test
        environment are set here so nodes in one namespace do not collide.
        """
        d = self.dir / "nodes" / name
        d.mkdir(parents=True, exist_ok=True)
        full: dict[str, str] = {
            **TAILSCALED_ENV,
            **env,
            "TS_SOCKET": str(d / "tailscaled.sock"),
            "TS_STATE_DIR": str(d / "state"),
            "PATH": f"{bin_path('tailscaled').parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        if not full.get("TS_KUBE_SECRET"):
            full.pop("TS_KUBE_SECRET", None)  # no Kubernetes here: state on disk
        extra = full.get("TS_TAILSCALED_EXTRA_ARGS", "")
        if "--port" not in extra:
            full["TS_TAILSCALED_EXTRA_ARGS"] = f"{extra} --port=0 --no-logs-no-support".strip()
        if "TS_SERVE_CONFIG" in full:
            path = Path(full["TS_SERVE_CONFIG"])
            if not path.is_absolute() or not path.parent.exists():
                path = d / path.name
            full["TS_SERVE_CONFIG"] = str(path)
            if serve_config is not None:
                path.write_text(serve_config)
        proc = Process(
            f"containerboot-{name}",
            [bin_path("containerboot")],
            d / "containerboot.log",
            env=full,
            netns=self.ns.name,
        )
        node = Node(name, d, proc, self)
        self.nodes.append(node)
        proc.wait_ready(lambda: node.status().get("BackendState") == "Running", timeout=60, what="Running")
        return node

    def crash(self, node: Node) -> None:
        """SIGKILL a node's every process at once, as a crashed pod or machine.

        containerboot starts tailscaled in a process group of its own, so killing containerboot's
        group is not enough: every process whose command line names the node's directory goes.
        """
        for pid in _pids_mentioning(str(node.dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        node.process.kill()

    def close(self) -> None:
        self.stop_nodes()
        if hasattr(self, "admin"):
            self.admin.close()
        if hasattr(self, "server"):
            self.server.stop(timeout=10)
        if self._owned is not None:
            self._owned.delete()
        else:
            self.ns.close_forwards()


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (
                    text.encode() in (d / "cmdline").read_bytes()
                    or text.encode() in (d / "environ").read_bytes()
                ):
                    pids.append(int(d.name))
    return pids


# --- talking to the tailnet from a test --------------------------------------------------------


def fetch(ns: NetNS, socks_port: int, host: str, port: int, timeout: float = 5.0) -> str:
    """Connect through SOCKS5, send a line, return the line the server answers (what a
    :class:`ProxyProtocolBackend` does), then close."""
    with socks5_connect(ns, socks_port, host, port, timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"hello\n")
        out = b""
        while not out.endswith(b"\n") and (chunk := s.recv(4096)):
            out += chunk
        return out.decode()


PP2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


@dataclass
class ProxyProtocolBackend:
    """A TCP server that requires a PROXY protocol v2 header, reads one line, and answers, in
    one line, its own name and the source address the header carried: ``backend=NAME src=IP:PORT``.

    Construct it inside the namespace (``with ns.entered(): ProxyProtocolBackend("a")``).
    """

    name: str
    host: str = "127.0.0.1"
    sources: list[str] = field(default_factory=list)
    """The source address of every connection served, in order."""
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.create_server((self.host, 0))
        self.port = int(self._sock.getsockname()[1])
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, name=f"pp2-{self.name}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                src = self._read_header(conn)
                with self._lock:
                    self.sources.append(src)
                # Read the client's line before answering: closing a socket with unread bytes
                # sends a reset, which can overtake the answer.
                line = b""
                while not line.endswith(b"\n") and (chunk := conn.recv(1024)):
                    line += chunk
                conn.sendall(f"backend={self.name} src={src}\n".encode())
                # Let the client close first: the side that closes first holds TIME_WAIT, and a
                # host (netstack) in TIME_WAIT drops a client's SYN that reuses the port, which
                # stalls rapid fresh connections for seconds.
                while conn.recv(1024):
                    pass
            except (OSError, ValueError) as e:
                with self._lock:
                    self.errors.append(repr(e))

    @staticmethod
    def _read_header(conn: socket.socket) -> str:
        head = recv_exact(conn, 16)
        if head[:12] != PP2_SIGNATURE:
            raise ValueError(f"no PROXY v2 signature: {head!r}")
        ver_cmd, fam, length = head[12], head[13], struct.unpack(">H", head[14:16])[0]
        body = recv_exact(conn, length)
        if ver_cmd >> 4 != 2:
            raise ValueError(f"PROXY version {ver_cmd >> 4}")
        if fam >> 4 == 1:  # AF_INET
            return f"{ipaddress.IPv4Address(body[0:4])}:{struct.unpack('>H', body[8:10])[0]}"
        if fam >> 4 == 2:  # AF_INET6
            return f"[{ipaddress.IPv6Address(body[0:16])}]:{struct.unpack('>H', body[32:34])[0]}"
        raise ValueError(f"PROXY family {fam:#x}")

    def close(self) -> None:
        self._sock.close()


def wait_for(
    check: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``check()`` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not met in {timeout} s (last error: {last!r})")


@contextlib.contextmanager
def tailnet_box(workdir: Path) -> Iterator[TailnetBox]:
    box = TailnetBox(workdir)
    try:
        yield box
    finally:
        box.close()


def serve_config_json(services: Mapping[str, Mapping[int, tuple[int, int]]]) -> str:
    """An ``ipn.ServeConfig`` with a ``Services`` map: ``{svc: {port: (target_port, proxy_protocol)}}``
    (for tests that do not go through ``tsgw.tailscale.ProxyConfig``)."""
    cfg = {
        "Services": {
            name: {
                "TCP": {
                    str(p): {"TCPForward": f"127.0.0.1:{t}", **({"ProxyProtocol": pp} if pp else {})}
                    for p, (t, pp) in ports.items()
                }
            }
            for name, ports in services.items()
        }
    }
    return json.dumps(cfg, indent=2)


# --- `just tailnet up|down` ---------------------------------------------------------------------

STATE_FILE = Path(
    os.environ.get("TSGW_TAILNET_STATE")
    or Path(os.environ.get("TSGW_CACHE", "~/.cache/tsgw")) / "tailnet-box.json"
).expanduser()
"""Where ``up`` records what it runs, for ``down`` (``TSGW_TAILNET_STATE`` overrides it)."""


def _up(workdir: Path) -> int:
    """Run the box and the hosted-API fake bound to it (one state) until SIGINT/SIGTERM."""
    from tests.support.boxed_fake import boxed_tailnet

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with boxed_tailnet(workdir) as tn:
            box, api_url = tn.box, tn.api_url
            info = {
                "pid": os.getpid(),
                "namespace": box.ns.name,
                "control_url": box.url,
                "admin_url": box.admin_url,
                "api_url": api_url,
                "oauth_client_id": tn.oauth_client_id,
                "workdir": str(workdir),
            }
            STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
            STATE_FILE.write_text(json.dumps(info, indent=2))
            print(json.dumps(info, indent=2))
            print(f"OAuth client secret (for {tn.oauth_client_id}): {tn.oauth_client_secret}")
            print(
                f"API access token (scope all, e.g. for the policy file /api/v2/tailnet/-/acl): {tn.api_key}"
            )
            print(
                f"Join a node: ip netns exec {box.ns.name} tailscaled --tun=userspace-networking ...; "
                f"tailscale up --login-server={box.url} --auth-key=<a key minted through {api_url}>"
                " (with TS_DEBUG_USE_DERP_HTTP=1 in tailscaled's environment)"
            )
            print("Ctrl-C or `just tailnet down` stops it.", flush=True)
            stop.wait()
    finally:
        STATE_FILE.unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)  # logs live there while it runs
    return 0


def _down() -> int:
    try:
        info = json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        print("no tailnet box is running")
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(info["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _running(int(info["pid"])):
        time.sleep(0.1)
    if Path(f"/run/netns/{info['namespace']}").exists():  # the runner died without cleaning up
        for pid in _netns_pids(info["namespace"]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", info["namespace"]], check=False)
    STATE_FILE.unlink(missing_ok=True)
    print(f"stopped the tailnet box in {info['namespace']}")
    return 0


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _netns_pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main(argv: list[str]) -> int:
    if argv[:1] == ["up"]:
        import tempfile

        return _up(Path(tempfile.mkdtemp(prefix="tsgw-tailnet-box-")))
    if argv[:1] == ["down"]:
        return _down()
    print("usage: python -m tests.support.tailnet_box up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
