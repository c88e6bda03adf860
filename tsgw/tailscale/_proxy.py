"""The tailscaled side of one proxy replica, as plain data in the shapes containerboot reads.

A tsgw proxy pod runs tailscale's own ``containerboot`` (the tailscale image's entry point)
next to Envoy. Everything tsgw decides about that container is here: environment variables
(``cmd/containerboot/main.go`` documents them) and the serve config file
(``ipn.ServeConfig`` JSON: ``TCP``/``Services`` maps keyed by port, handlers with
``TCPForward`` and ``ProxyProtocol``). The translate layer copies these into a pod spec;
nothing here knows Kubernetes objects.

Choices, and why:

* Userspace networking (``TS_USERSPACE=true``): no TUN, no privileges, no NET_ADMIN.
* Inbound: tailscaled terminates nothing; each hosted port is a TCP forward to Envoy on
  loopback with PROXY protocol v2, so Envoy sees the tailnet client's address.
* Outbound: tailscaled's HTTP proxy listener on loopback; Envoy tunnels egress through it
  with CONNECT (``tunneling_config``).
* The auth key is never in a pod spec. Two modes, both containerboot's own:

  - environment mode (default): containerboot reads the ``authkey`` field of the replica's
    state Secret when ``TS_AUTHKEY`` is unset and deletes it after the first login
    (``TS_AUTH_ONCE=true``); Tailscale Services are advertised from the serve config's
    ``Services`` map (service auto-advertisement), so the serve config file is the one switch;
  - config-file mode (``config_dir``): a per-replica tailscaled config file
    (``ipn.ConfigVAlpha``, what Tailscale's operator uses) carries hostname, login server, key
    and ``AdvertiseServices``; a proxy whose key is refused asks for a new one through
    ``reissue_authkey`` in its state, which :class:`~tsgw.tailscale.AuthKeyLifecycle` answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._types import AuthKeyRequest

__all__ = ["HostedService", "ProxyConfig", "ServePort"]

_SERVICE_NAME = re.compile(r"svc:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class ServePort:
    """One tailnet-facing TCP port, forwarded to a local listener (Envoy's)."""

    port: int
    """The port clients dial on the tailnet (for a Tailscale Service: its ``tcp:<port>``)."""
    target_port: int
    """The loopback port of the Envoy listener that receives the connection."""
    target_host: str = "127.0.0.1"
    """Where Envoy listens. Default 127.0.0.1 (same pod, never the pod IP)."""
    proxy_protocol: int = 2
    """PROXY protocol version sent before the stream (0 = none, 1, 2). Default 2, so Envoy's
    ``proxy_protocol`` listener filter learns the tailnet source address."""

    def __post_init__(self) -> None:
        for p in (self.port, self.target_port):
            if not 0 < p < 65536:
                raise ValueError(f"port out of range: {p}")
        if self.proxy_protocol not in (0, 1, 2):
            raise ValueError(f"PROXY protocol version must be 0, 1 or 2: {self.proxy_protocol}")

    def handler(self) -> dict[str, Any]:
        """The ``ipn.TCPPortHandler`` JSON of this port."""
        h: dict[str, Any] = {"TCPForward": f"{self.target_host}:{self.target_port}"}
        if self.proxy_protocol:
            h["ProxyProtocol"] = self.proxy_protocol
        return h


@dataclass(frozen=True)
class HostedService:
    """A Tailscale Service this replica hosts, with the ports it forwards."""

    name: str
    """``svc:<dns-label>``."""
    ports: tuple[ServePort, ...]

    def __post_init__(self) -> None:
        if not _SERVICE_NAME.fullmatch(self.name):
            raise ValueError(f"not a Tailscale Service name (svc:<dns-label>): {self.name!r}")

    def api_ports(self) -> tuple[str, ...]:
        """The service's ``ports`` for the API (``tcp:<port>``), sorted."""
        return tuple(f"tcp:{p}" for p in sorted({sp.port for sp in self.ports}))


@dataclass(frozen=True)
class ProxyConfig:
    """containerboot's settings for one replica (hostname and state are per replica)."""

    hostname: str
    """The device's hostname (``TS_HOSTNAME``); ``$(POD_NAME)`` works in a pod spec."""
    state_secret: str = ""
    """The replica's state Secret (``TS_KUBE_SECRET``); ``$(POD_NAME)`` works. Default empty:
    state on disk in ``state_dir`` instead (no Kubernetes, e.g. tests)."""
    state_dir: str = ""
    """``TS_STATE_DIR`` when there is no state Secret. Default empty."""
    tags: tuple[str, ...] = ()
    """Tags of the device; they go into the replica's auth key (:meth:`auth_key_request`).
    Default () (the operator always sets some: OAuth-minted keys must be tagged)."""
    login_server: str = ""
    """Control URL for ``tailscale up --login-server`` (Headscale). Default empty: Tailscale."""
    auth_key: str = field(default="", repr=False)
    """``TS_AUTHKEY``, only for runs without a state Secret. Default empty: containerboot
    reads the ``authkey`` field the lifecycle put in the state Secret."""
    services: tuple[HostedService, ...] = ()
    """Tailscale Services this replica hosts. Default ()."""
    device_ports: tuple[ServePort, ...] = ()
    """Ports served on the device's own tailnet addresses (where the control plane has no
    Tailscale Services, e.g. Headscale). Default ()."""
    serve_config_path: str = "/etc/tsgw/serve-config.json"
    """Where the serve config file is mounted (``TS_SERVE_CONFIG``; containerboot watches it).
    Default /etc/tsgw/serve-config.json."""
    outbound_http_proxy: str = "127.0.0.1:1055"
    """tailscaled's HTTP CONNECT proxy for egress (``TS_OUTBOUND_HTTP_PROXY_LISTEN``); empty
    disables it. Default 127.0.0.1:1055 (loopback: only the pod's Envoy reaches it)."""
    local_addr_port: str = "127.0.0.1:9002"
    """Health endpoint ``/healthz`` (``TS_LOCAL_ADDR_PORT`` + ``TS_ENABLE_HEALTH_CHECK``);
    empty disables it. Default 127.0.0.1:9002."""
    metrics: bool = False
    """Also serve ``/metrics`` there (``TS_ENABLE_METRICS``). Default False."""
    socket: str = "/tmp/tailscaled.sock"
    """LocalAPI socket (``TS_SOCKET``). Default /tmp/tailscaled.sock, containerboot's."""
    accept_dns: bool = False
    """Use the tailnet's DNS (``TS_ACCEPT_DNS``). Default False: the pod keeps cluster DNS."""
    tailscaled_extra_args: tuple[str, ...] = ()
    """Extra ``tailscaled`` flags (``TS_TAILSCALED_EXTRA_ARGS``). Default ()."""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """More environment, e.g. ``TS_DEBUG_USE_DERP_HTTP`` in tests. Default {}."""
    config_dir: str = ""
    """Config-file mode: where the replica's tailscaled config files (:meth:`config_files`)
    are mounted (``TS_EXPERIMENTAL_VERSIONED_CONFIG_DIR``). Then hostname, login server, auth
    key and advertised services come from the file, not the environment, and containerboot
    asks for a new key (``reissue_authkey``) when its key is refused. Default empty: the
    environment mode above."""

    def serve_config(self) -> dict[str, Any]:
        """The ``ipn.ServeConfig`` JSON (map keys are strings, as Go writes uint16 keys)."""
        cfg: dict[str, Any] = {}
        if self.device_ports:
            cfg["TCP"] = {str(p.port): p.handler() for p in sorted(self.device_ports, key=lambda p: p.port)}
        if self.services:
            cfg["Services"] = {
                s.name: {"TCP": {str(p.port): p.handler() for p in sorted(s.ports, key=lambda p: p.port)}}
                for s in sorted(self.services, key=lambda s: s.name)
            }
        return cfg

    def serve_config_json(self) -> str:
        """:meth:`serve_config` as the bytes of the mounted file (stable key order)."""
        return _json_file(self.serve_config())

    def auth_key_request(self, description: str = "") -> AuthKeyRequest:
        """The key one replica joins with: single use, pre-authorized, tagged, not ephemeral."""
        return AuthKeyRequest(
            tags=self.tags,
            reusable=False,
            ephemeral=False,
            preauthorized=True,
            description=description[:50],
        )

    def tailscaled_config(self, auth_key: str | None = None) -> dict[str, Any]:
        """The ``ipn.ConfigVAlpha`` (``Version: alpha0``) of this replica, for config-file mode.

        ``auth_key`` is the key to log in with (default: the ``auth_key`` field); pass ""
        once the device has registered, so the used key does not linger in a Secret
        (:meth:`~tsgw.tailscale.AuthKeyLifecycle.config_key` decides). ``AdvertiseServices``
        lists the hosted Tailscale Services.
        """
        key = self.auth_key if auth_key is None else auth_key
        # opt.Bool fields are JSON booleans (a quoted "false" is refused by tailscaled).
        conf: dict[str, Any] = {
            "Version": "alpha0",
            "Locked": False,
            "Hostname": self.hostname,
            "AcceptDNS": self.accept_dns,
            "AcceptRoutes": False,
            "NoStatefulFiltering": True,
        }
        if self.login_server:
            conf["ServerURL"] = self.login_server
        if key:
            conf["AuthKey"] = key
        if self.services:
            conf["AdvertiseServices"] = sorted(s.name for s in self.services)
        return conf

    def config_files(self, auth_key: str | None = None) -> dict[str, str]:
        """The files of ``config_dir``: ``cap-<capability version>.hujson`` → JSON text.

        containerboot reads the file with the highest capability version not above its own;
        capability version 95 (tailscale 1.74) already has every field used here.
        """
        return {"cap-95.hujson": _json_file(self.tailscaled_config(auth_key))}

    def wait_command(self, image: str, timeout_ms: int) -> tuple[str, ...] | None:
        """A command that returns 0 as soon as this replica's tailscaled is Running with an
        address, waiting at most ``timeout_ms`` (``tailscale wait``: it follows the LocalAPI's
        IPN bus, so it answers within milliseconds of the join instead of at a probe period's
        next tick); None when ``image``'s tag is not a release known to have that command.

        ``tailscale wait`` is in the CLI from v1.102 (``cmd/tailscale/cli/wait.go``; v1.101
        has none); an image named by digest only, or tagged ``latest``/``stable`` or anything
        that is not a version, gets None: the caller then relies on ``/healthz`` alone.
        """
        if not _at_least(_image_version(image), _WAIT_SINCE):
            return None
        return ("tailscale", f"--socket={self.socket}", "wait", f"--timeout={timeout_ms}ms")

    def env(self) -> dict[str, str]:
        """containerboot's environment for this replica (no secret unless ``auth_key`` is set)."""
        env: dict[str, str] = {
            "TS_USERSPACE": "true",
            "TS_SOCKET": self.socket,
            "TS_KUBE_SECRET": self.state_secret,
        }
        if self.config_dir:
            # Hostname, server, key and services are in the config file; containerboot
            # refuses the corresponding variables next to it.
            env["TS_EXPERIMENTAL_VERSIONED_CONFIG_DIR"] = self.config_dir
        else:
            env["TS_AUTH_ONCE"] = "true"
            env["TS_HOSTNAME"] = self.hostname
            env["TS_ACCEPT_DNS"] = "true" if self.accept_dns else "false"
            if self.auth_key:
                env["TS_AUTHKEY"] = self.auth_key
            if self.login_server:
                env["TS_EXTRA_ARGS"] = f"--login-server={self.login_server}"
        if self.state_dir:
            env["TS_STATE_DIR"] = self.state_dir
        if self.services or self.device_ports:
            env["TS_SERVE_CONFIG"] = self.serve_config_path
            # Environment mode: advertise exactly the services of the serve config (and
            # withdraw them on shutdown). Config-file mode: the file's AdvertiseServices decide.
            env["TS_EXPERIMENTAL_SERVICE_AUTO_ADVERTISEMENT"] = "false" if self.config_dir else "true"
        if self.outbound_http_proxy:
            env["TS_OUTBOUND_HTTP_PROXY_LISTEN"] = self.outbound_http_proxy
        if self.local_addr_port:
            env["TS_LOCAL_ADDR_PORT"] = self.local_addr_port
            env["TS_ENABLE_HEALTH_CHECK"] = "true"
            if self.metrics:
                env["TS_ENABLE_METRICS"] = "true"
        if self.tailscaled_extra_args:
            env["TS_TAILSCALED_EXTRA_ARGS"] = " ".join(self.tailscaled_extra_args)
        env.update(self.extra_env)
        return env

    def __repr__(self) -> str:
        return (
            f"ProxyConfig(hostname={self.hostname!r}, state_secret={self.state_secret!r}, "
            f"tags={self.tags!r}, services={[s.name for s in self.services]!r})"
        )


def _json_file(value: Any) -> str:
    """A mounted JSON file: sorted keys, two-space indent, final newline (json.dumps's layout;
    orjson because the translator writes one per replica and json's indenting encoder is slow)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n"


_WAIT_SINCE = (1, 102)
"""The first tailscale release whose CLI has ``tailscale wait``."""

_TAG = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$")


def _image_version(image: str) -> tuple[int, int] | None:
    """``ghcr.io/tailscale/tailscale:v1.102.3@sha256:...`` → (1, 102); None without a version tag."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    m = _TAG.match(last.rsplit(":", 1)[1])
    return (int(m.group(1)), int(m.group(2))) if m else None


def _at_least(version: tuple[int, int] | None, floor: tuple[int, int]) -> bool:
    return version is not None and version >= floor
