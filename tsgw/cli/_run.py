"""`tsgw run`: the operator against a cluster (in-cluster service account, or a kubeconfig), or
`tsgw run --standalone DIR`: the control plane with a folder of YAML in place of a cluster."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import anyio

from tsgw import translate
from tsgw.cli._admin import admin_address_arg
from tsgw.cli._args import address, auth_key_file, bind_address, port
from tsgw.operator import Standalone, StandaloneOptions
from tsgw.providers import FileOptions


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run", help="run the operator (in a cluster or against a kubeconfig), or standalone from a folder"
    )
    p.add_argument(
        "--standalone",
        metavar="DIR",
        type=Path,
        help="serve the objects in DIR (CRD YAML, Services, EndpointSlices), watched for changes",
    )
    p.add_argument(
        "--xds",
        default=None,
        type=address,
        metavar="HOST:PORT",
        help="ADS server address (default: 0.0.0.0:18000 in a cluster, 127.0.0.1:18000 standalone)",
    )
    admin_address_arg(p)
    p.add_argument(
        "--extension",
        default=None,
        type=address,
        metavar="HOST:PORT",
        help="serve Envoy Gateway's extension hooks here (its extensionManager.service; default: not served)",
    )
    p.add_argument(
        "--listener-port",
        type=port(1),
        default=translate.Options().first_listener_port,
        help="each proxy group's Envoy binds its listeners from this port up (default %(default)s)",
    )
    p.add_argument(
        "--connect-proxy-port",
        type=port(1),
        default=translate.Options().connect_proxy_port,
        help="tailscaled's outbound HTTP CONNECT proxy port on the egress Envoy's loopback "
        "(default %(default)s)",
    )
    p.add_argument(
        "--health-probe-bind-address",
        metavar="HOST:PORT",
        type=bind_address,
        default=None,
        help="serve /healthz, /readyz (and standalone, /metrics) here; :PORT is every interface "
        "(default: :8081 in a cluster, not served standalone)",
    )
    p.add_argument(
        "--no-probe", action="store_true", help="do not probe EndpointSlice endpoints (serve them as written)"
    )
    p.add_argument(
        "--xds-auth-key-file",
        metavar="PATH",
        type=auth_key_file,
        default=None,
        help="standalone: require each Envoy's per-group token, derived from this key (tsgw bootstrap "
        "--xds-auth-key-file writes it); default: no authentication (the ADS server is on loopback)",
    )
    add_cluster_arguments(p)
    p.set_defaults(run=run)


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("in a cluster (without --standalone)")
    g.add_argument(
        "--kubeconfig",
        metavar="PATH",
        default=None,
        help="kubeconfig to use (default: the in-cluster service account, else $KUBECONFIG "
        "or ~/.kube/config)",
    )
    g.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "tsgw-system"),
        help="the operator's namespace, where its Lease lives (default $POD_NAMESPACE or tsgw-system)",
    )
    g.add_argument(
        "--metrics-bind-address",
        metavar="HOST:PORT",
        default=":8080",
        help="serve /metrics here (default %(default)s; 0 turns it off)",
    )
    g.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the controllers only on the Lease holder (default: on)",
    )
    g.add_argument(
        "--tailnet-poll-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how often each tailnet's devices and Tailscale Services are read (default %(default)s)",
    )
    g.add_argument(
        "--auth-key-workers",
        type=int,
        default=4,
        metavar="N",
        help="owners whose auth keys and devices are worked on at once, per kind (default %(default)s)",
    )
    g.add_argument(
        "--proxy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the proxies' tailscale container (repeatable), e.g. "
        "TS_DEBUG_USE_DERP_HTTP=1 where the DERP relay speaks plain HTTP",
    )
    g.add_argument(
        "--cluster-id",
        default="",
        metavar="ID",
        help="this cluster's name in the owner claims on Tailscale Services; give each cluster "
        "sharing a tailnet its own (default: the kube-system namespace's UID)",
    )
    g.add_argument(
        "--xds-auth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="require each proxy Envoy's per-group token on the xDS port; the key is the Secret "
        "tsgw-xds-auth of the operator's namespace, made when absent (default: on)",
    )
    g.add_argument(
        "--xds-service",
        metavar="HOST:PORT",
        default=None,
        help="where proxy Envoys reach the xDS server (default tsgw.NAMESPACE.svc:18000)",
    )


def run(args: argparse.Namespace) -> int:
    if args.standalone is None:
        return run_cluster(args)
    if args.xds is None:
        args.xds = "127.0.0.1:18000"
    if not args.standalone.is_dir():
        print(f"tsgw run: {args.standalone} is not a folder", file=sys.stderr)
        return 2
    options = StandaloneOptions(
        directory=args.standalone,
        xds_address=args.xds,
        admin_address=args.admin,
        extension_address=args.extension,
        translate=dataclasses.replace(
            translate.Options(),
            first_listener_port=args.listener_port,
            connect_proxy_port=args.connect_proxy_port,
        ),
        file=FileOptions(probe_endpoints=not args.no_probe),
        health_probe_address=args.health_probe_bind_address,
        xds_auth_key=args.xds_auth_key_file,
    )
    failed: list[str] = []
    try:
        standalone = Standalone(options)
    except ValueError as e:  # an address that does not parse
        print(f"tsgw run: {e}", file=sys.stderr)
        return 2
    try:
        anyio.run(_serve, standalone)
    except* OSError as group:  # a port in use, a folder that vanished
        failed.extend(_leaves(group))
    if failed:
        print(f"tsgw run: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _leaves(e: BaseException) -> list[str]:
    if isinstance(e, BaseExceptionGroup):
        return [m for sub in e.exceptions for m in _leaves(sub)]
    return [str(e)]


async def _serve(standalone: Standalone) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (Envoys see their streams closed)."""
    async with anyio.create_task_group() as tg:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            tg.start_soon(standalone.run)
            async for _ in signals:
                tg.cancel_scope.cancel()
                break


class _StartError(Exception):
    """The operator could not start (no kubeconfig, no in-cluster service account)."""


def run_cluster(args: argparse.Namespace) -> int:
    """The operator of one replica, until SIGTERM or SIGINT."""
    from tsgw._address import parse_address
    from tsgw.kube import Client, KubeError, LeaderElectionLost
    from tsgw.operator import Operator, OperatorOptions

    try:
        proxy_env = []
        for item in args.proxy_env:
            name, eq, value = item.partition("=")
            if not eq or not name:
                raise ValueError(f"--proxy-env must be NAME=VALUE, got {item!r}")
            proxy_env.append((name, value))
        if not args.tailnet_poll_interval > 0:
            raise ValueError("--tailnet-poll-interval must be more than 0")
        if not 1 <= args.auth_key_workers <= 64:
            raise ValueError(f"--auth-key-workers must be 1 to 64, got {args.auth_key_workers}")
        xds_service = args.xds_service or f"tsgw.{args.namespace}.svc:18000"
        xds_host, xds_port = parse_address(xds_service, what="--xds-service")
        options = OperatorOptions(
            namespace=args.namespace,
            xds_address=args.xds or "0.0.0.0:18000",
            admin_address=args.admin,
            extension_address=args.extension,
            health_probe_address=args.health_probe_bind_address or ":8081",
            metrics_address=None if args.metrics_bind_address == "0" else args.metrics_bind_address,
            leader_election=args.leader_elect,
            tailnet_poll_interval=args.tailnet_poll_interval,
            auth_key_workers=args.auth_key_workers,
            cluster_id=args.cluster_id,
            xds_auth=args.xds_auth,
            translate=dataclasses.replace(
                translate.Options(),
                operator_namespace=args.namespace,
                xds_host=xds_host,
                xds_port=xds_port,
                first_listener_port=args.listener_port,
                connect_proxy_port=args.connect_proxy_port,
                proxy_env=tuple(proxy_env),
            ),
        )
    except ValueError as e:
        print(f"tsgw run: {e}", file=sys.stderr)
        return 2

    if args.kubeconfig and not Path(args.kubeconfig).is_file():
        print(f"tsgw run: kubeconfig {args.kubeconfig}: no such file", file=sys.stderr)
        return 1

    async def main() -> None:
        try:
            client = (
                await Client.from_kubeconfig(args.kubeconfig)
                if args.kubeconfig
                else await Client.from_environment()
            )
        except Exception as e:  # the config loader's own errors (no cluster, bad file)
            raise _StartError(f"no Kubernetes API to talk to: {e}") from e
        async with client:
            operator = Operator(client, options)
            async with anyio.create_task_group() as tg:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    tg.start_soon(operator.run)
                    async for _ in signals:
                        operator.manager.stop()
                        break

    failed: list[str] = []
    try:
        anyio.run(main)
    except* LeaderElectionLost:
        failed.append("lost the leader Lease; exiting so the pod restarts as a follower")
    except* (KubeError, OSError, _StartError) as group:
        failed.extend(_leaves(group))
    if failed:
        print(f"tsgw run: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
