"""Kubeconfig credentials and transport against the real API server: an exec plugin whose token
expires or is refused is run again (client-go's exec authenticator), and the cluster's
``proxy-url`` and ``tls-server-name`` are honoured."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from tests.support.controlplane import ControlPlane
from tsgw.kube import CONFIGMAPS, Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PLUGIN = """\
import datetime, json, pathlib, sys
d = pathlib.Path(sys.argv[1])
n = int((d / "runs").read_text()) if (d / "runs").exists() else 0
(d / "runs").write_text(str(n + 1))
tokens = (d / "tokens").read_text().split()
status = {"token": tokens[min(n, len(tokens) - 1)]}
lifetime = float((d / "lifetime").read_text())
if lifetime:
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
    status["expirationTimestamp"] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
api = "client.authentication.k8s.io/v1"
print(json.dumps({"apiVersion": api, "kind": "ExecCredential", "status": status}))
"""


def exec_kubeconfig(cp: ControlPlane, d: Path, tokens: list[str], lifetime: float) -> Path:
    """A kubeconfig whose user is a real exec plugin handing out ``tokens`` one per run."""
    (d / "plugin.py").write_text(PLUGIN)
    (d / "tokens").write_text("\n".join(tokens))
    (d / "lifetime").write_text(str(lifetime))
    config = json.loads(cp.kubeconfig.read_text())
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(d / "plugin.py"), str(d)],
            "interactiveMode": "Never",
        }
    }
    path = d / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def runs(d: Path) -> int:
    return int((d / "runs").read_text())


async def test_an_exec_credential_is_fetched_again_once_it_expires(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    kubeconfig = exec_kubeconfig(control_plane, tmp_path, [control_plane.token] * 2, lifetime=2)
    async with await Client.from_kubeconfig(str(kubeconfig)) as client:
        for _ in range(3):
            await client.list(CONFIGMAPS, "default")
        assert runs(tmp_path) == 1  # cached while valid
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)
        with anyio.fail_after(10):
            while datetime.datetime.now(datetime.UTC) < expiry:  # noqa: ASYNC110  (past its lifetime)
                await anyio.sleep(0.1)
        await client.list(CONFIGMAPS, "default")
        assert runs(tmp_path) == 2


async def test_a_401_runs_the_exec_plugin_again_and_retries_the_request(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # The first token the plugin hands out is refused (revoked, rotated): no expiry told us.
    kubeconfig = exec_kubeconfig(control_plane, tmp_path, ["revoked", control_plane.token], lifetime=0)
    async with await Client.from_kubeconfig(str(kubeconfig)) as client:
        await client.list(CONFIGMAPS, "default")
        assert client.requests[("GET", 401)] == 1
        assert client.requests[("GET", 200)] == 1
        assert runs(tmp_path) == 2
        await client.list(CONFIGMAPS, "default")
        assert runs(tmp_path) == 2  # the new token is kept


class ConnectProxy:
    """A small HTTP CONNECT proxy that resolves names from ``hosts`` and counts tunnels."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = hosts
        self.tunnels: list[str] = []
        self.port = 0

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            self.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
            task_status.started(self.port)
            await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await client.receive()
            target = head.split(b" ")[1].decode()
            host, _, port = target.rpartition(":")
            self.tunnels.append(target)
            async with await anyio.connect_tcp(self.hosts.get(host, host), int(port)) as upstream:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")

                async def pump(a: Any, b: Any) -> None:
                    try:
                        async for chunk in a:
                            await b.send(chunk)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                        pass
                    finally:
                        tg.cancel_scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(pump, client, upstream)
                    tg.start_soon(pump, upstream, client)


async def test_proxy_url_and_tls_server_name_from_the_kubeconfig_are_used(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # "apiserver.invalid" resolves nowhere but in the proxy, and is not in the serving
    # certificate: the request works only through the proxy and checked against tls-server-name.
    proxy = ConnectProxy({"apiserver.invalid": "127.0.0.1"})
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        config = json.loads(control_plane.kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        cluster["server"] = f"https://apiserver.invalid:{control_plane.port}"
        cluster["proxy-url"] = f"http://127.0.0.1:{proxy.port}"
        cluster["tls-server-name"] = "kubernetes.default.svc"
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(config))
        async with await Client.from_kubeconfig(str(path)) as client:
            with anyio.fail_after(30):
                listed = await client.list(CONFIGMAPS, "default")
                async with client.watch(CONFIGMAPS, "default", resource_version=listed.resource_version):
                    pass
        assert proxy.tunnels
        assert set(proxy.tunnels) == {f"apiserver.invalid:{control_plane.port}"}
        tg.cancel_scope.cancel()
