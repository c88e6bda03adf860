"""`tsgw bootstrap`: write an Envoy bootstrap that points Envoy at tsgw's ADS server."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import yaml

from tsgw.cli._args import address, auth_key_file, port
from tsgw.translate import node_cluster
from tsgw.xds import bootstrap, group_token


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bootstrap", help="write an Envoy bootstrap for tsgw's aggregated xDS server")
    p.add_argument("--node-id", required=True, help="the Envoy's node id (a proxy pod's name)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--group",
        metavar="NAMESPACE/GROUP",
        help="the proxy group whose snapshot it gets, e.g. demo/web-tssvc (node cluster web-tssvc.demo)",
    )
    which.add_argument("--cluster", help="the node cluster as it is (what tsgw status shows)")
    p.add_argument(
        "--xds-address", required=True, type=address, metavar="HOST:PORT", help="tsgw's xDS server"
    )
    p.add_argument("--delta", action="store_true", help="incremental xDS (DELTA_GRPC) instead of SotW")
    p.add_argument(
        "--admin-port", type=port(0), default=9901, help="Envoy admin port on loopback (default 9901)"
    )
    p.add_argument(
        "--xds-auth-key-file",
        metavar="PATH",
        type=auth_key_file,
        default=None,
        help="put the group's xDS token, derived from this key, in the bootstrap (for a server "
        "that authenticates: tsgw run --xds-auth-key-file)",
    )
    p.add_argument("--format", choices=["yaml", "json"], default="yaml", help="output format (default yaml)")
    p.add_argument("-o", "--output", type=pathlib.Path, help="write to this file instead of stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cluster = args.cluster
    if args.group is not None:
        namespace, slash, group = args.group.partition("/")
        if not slash or not namespace or not group:
            print(f"tsgw bootstrap: --group must be NAMESPACE/GROUP, got {args.group!r}", file=sys.stderr)
            return 2
        cluster = node_cluster(namespace, group)
    try:
        token = group_token(args.xds_auth_key_file, cluster) if args.xds_auth_key_file else None
        config = bootstrap(
            args.node_id, cluster, args.xds_address, delta=args.delta, admin_port=args.admin_port, token=token
        )
    except ValueError as e:
        print(f"tsgw bootstrap: {e}", file=sys.stderr)
        return 2
    text = (
        json.dumps(config, indent=2) + "\n"
        if args.format == "json"
        else yaml.safe_dump(config, sort_keys=False)
    )
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
