"""`tsgw run --standalone DIR`: the control plane with a folder of YAML in place of a cluster."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import anyio

from tsgw import translate
from tsgw.admin import DEFAULT_ADDRESS
from tsgw.cli._args import address, port
from tsgw.operator import Standalone, StandaloneOptions
from tsgw.providers import FileOptions


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the control plane (standalone: from a folder of YAML)")
    p.add_argument(
        "--standalone",
        metavar="DIR",
        type=Path,
        help="serve the objects in DIR (CRD YAML, Services, EndpointSlices), watched for changes",
    )
    p.add_argument(
        "--xds", default="127.0.0.1:18000", type=address, metavar="HOST:PORT", help="ADS server address"
    )
    p.add_argument(
        "--admin",
        default=os.environ.get("TSGW_ADMIN", DEFAULT_ADDRESS),
        type=address,
        metavar="HOST:PORT",
        help=f"admin API address (default $TSGW_ADMIN or {DEFAULT_ADDRESS})",
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
        type=address,
        default=None,
        help="serve /healthz, /readyz and /metrics (Prometheus) here (default: not served)",
    )
    p.add_argument(
        "--no-probe", action="store_true", help="do not probe EndpointSlice endpoints (serve them as written)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.standalone is None:
        print("tsgw run: only standalone mode is available here: tsgw run --standalone DIR", file=sys.stderr)
        return 2
    if not args.standalone.is_dir():
        print(f"tsgw run: {args.standalone} is not a folder", file=sys.stderr)
        return 2
    options = StandaloneOptions(
        directory=args.standalone,
        xds_address=args.xds,
        admin_address=args.admin,
        translate=dataclasses.replace(
            translate.Options(),
            first_listener_port=args.listener_port,
            connect_proxy_port=args.connect_proxy_port,
        ),
        file=FileOptions(probe_endpoints=not args.no_probe),
        health_probe_address=args.health_probe_bind_address,
    )
    failed: list[str] = []
    try:
        anyio.run(_serve, Standalone(options))
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
