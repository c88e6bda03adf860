"""`tsgw snapshot list|dump|diff|watch` and `tsgw status`: clients of a running admin API."""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import yaml

from tsgw.admin import DEFAULT_ADDRESS, AdminClient, AdminError, messages
from tsgw.cli._args import address
from tsgw.cli._clustercli import add_cluster_arguments, run_status

_TYPES = ("sds", "cds", "eds", "lds", "rds")


def admin_address_arg(p: argparse.ArgumentParser) -> None:
    """``--admin HOST:PORT``: where the admin API listens (``tsgw run``) or is dialled (the
    inspecting commands); one flag, one default."""
    p.add_argument(
        "--admin",
        default=os.environ.get("TSGW_ADMIN", DEFAULT_ADDRESS),
        type=address,
        metavar="HOST:PORT",
        help=f"admin API address (default $TSGW_ADMIN or {DEFAULT_ADDRESS})",
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    snap = sub.add_parser("snapshot", help="inspect the xDS snapshots of a running tsgw")
    ssub = snap.add_subparsers(dest="snapshot_command", required=True, metavar="SUBCOMMAND")

    p = ssub.add_parser("list", help="stored snapshots per node group (current and recent)")
    admin_address_arg(p)
    p.add_argument("--group", default="", help="only this node group")
    p.set_defaults(run=_run(_list))

    p = ssub.add_parser("dump", help="one snapshot's resources")
    admin_address_arg(p)
    p.add_argument("--group", required=True)
    p.add_argument("--version", default="", help="version label or generation (default: current)")
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(run=_run(_dump))

    p = ssub.add_parser("diff", help="what changed between two snapshots of a group")
    admin_address_arg(p)
    p.add_argument("--group", required=True)
    p.add_argument("old", help="version label or generation")
    p.add_argument("new", nargs="?", default="", help="version label or generation (default: current)")
    p.set_defaults(run=_run(_diff))

    p = ssub.add_parser("watch", help="print each new snapshot version as it is set")
    admin_address_arg(p)
    p.add_argument("--group", default="")
    p.add_argument("--count", type=int, default=0, help="stop after this many events (default: never)")
    p.set_defaults(run=_run(_watch))

    p = sub.add_parser(
        "status",
        help="connected Envoys and what each has ACKed or NACKed (admin API), or with --cluster "
        "the whole install per tailnet (Kubernetes API)",
    )
    admin_address_arg(p)
    p.add_argument(
        "--cluster",
        action="store_true",
        help="read the install through the Kubernetes API: per tailnet its proxy groups, replicas, "
        "devices, Tailscale Services, each Envoy's state and each object's last error",
    )
    add_cluster_arguments(p)
    p.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    admin_status = _run(_status)
    p.set_defaults(run=lambda args: run_status(args) if args.cluster else admin_status(args))


def _run(
    fn: Callable[[AdminClient, argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            async with AdminClient(args.admin) as client:
                return await fn(client, args)

        try:
            return anyio.run(main)
        except AdminError as e:
            print(f"tsgw: {e}", file=sys.stderr)
            return 1

    return run


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    return "\n".join(lines) + "\n"


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(since: float) -> str:
    s = int(time.time() - since)
    return (
        f"{s // 3600}h{s % 3600 // 60:02d}m"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
        if s >= 60
        else f"{s}s"
    )


async def _list(client: AdminClient, args: argparse.Namespace) -> int:
    rows = [
        [
            s.group,
            str(s.generation),
            s.version + (" *" if s.current else ""),
            _when(s.created),
            *(str(s.counts.get(t, 0)) for t in _TYPES),
        ]
        for s in await client.list_snapshots(args.group)
    ]
    sys.stdout.write(table(rows, ["GROUP", "GEN", "VERSION", "CREATED", *(t.upper() for t in _TYPES)]))
    return 0


async def _dump(client: AdminClient, args: argparse.Namespace) -> int:
    summary, resources = await client.get_snapshot(args.group, args.version)
    doc = {
        "group": summary.group,
        "generation": summary.generation,
        "version": summary.version,
        "types": resources,
    }
    if args.output == "json":
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=True))
    return 0


def diff_snapshots(old: dict[str, Any], new: dict[str, Any], old_label: str, new_label: str) -> str:
    """A readable diff: per type, added/removed/changed resources, with a YAML diff of each change."""
    out: list[str] = []
    for t in sorted(set(old) | set(new)):
        a = old.get(t, {}).get("resources", {})
        b = new.get(t, {}).get("resources", {})
        added = sorted(set(b) - set(a))
        removed = sorted(set(a) - set(b))
        changed = sorted(n for n in set(a) & set(b) if a[n] != b[n])
        if not (added or removed or changed):
            continue
        out.append(f"{t}: +{len(added)} -{len(removed)} ~{len(changed)}")
        out += [f"+ {t}/{n}" for n in added]
        out += [f"- {t}/{n}" for n in removed]
        for n in changed:
            out.append(f"~ {t}/{n}")
            lines = difflib.unified_diff(
                yaml.safe_dump(a[n], sort_keys=True).splitlines(),
                yaml.safe_dump(b[n], sort_keys=True).splitlines(),
                f"{n}@{old_label}",
                f"{n}@{new_label}",
                lineterm="",
            )
            out += ["    " + line for line in lines]
    return "\n".join(out) + "\n" if out else "no differences\n"


async def _diff(client: AdminClient, args: argparse.Namespace) -> int:
    old_summary, old = await client.get_snapshot(args.group, args.old)
    new_summary, new = await client.get_snapshot(args.group, args.new)
    sys.stdout.write(diff_snapshots(old, new, old_summary.version, new_summary.version))
    return 0


async def _watch(client: AdminClient, args: argparse.Namespace) -> int:
    seen = 0
    async for s in client.watch_snapshots(args.group):
        counts = " ".join(f"{t}={s.counts.get(t, 0)}" for t in _TYPES if s.counts.get(t, 0))
        print(f"{_when(s.created)} {s.group} gen={s.generation} version={s.version} {counts}", flush=True)
        seen += 1
        if args.count and seen >= args.count:
            break
    return 0


def type_state(t: messages.TypeStatus) -> str:
    """Against the group's current snapshot, as the server judges it: SYNCED (the Envoy holds
    it, or wants nothing of the type), PENDING (being sent or awaiting the ACK), NACKED (it
    refused the current content, now or earlier, and keeps an older one). A server too old to
    judge (no ``sync``) falls back to comparing what was sent with what was ACKed."""
    if t.sync:
        return "NACKED" if t.sync == "REJECTED" else t.sync
    if not t.sent_version:
        return "NOT SENT"
    if t.HasField("last_nack") and t.last_nack.version == t.sent_version:
        return "NACKED"
    return "SYNCED" if t.acked_version == t.sent_version else "PENDING"


async def _status(client: AdminClient, args: argparse.Namespace) -> int:
    nodes = await client.list_nodes()
    sources = await client.list_sources()
    if args.output in ("json", "yaml"):
        from google.protobuf import json_format

        docs = [json_format.MessageToDict(n, preserving_proto_field_name=True) for n in nodes]
        if sources:  # only standalone mode reports sources; keep the plain list otherwise
            out: Any = {
                "nodes": docs,
                "sources": [json_format.MessageToDict(s, preserving_proto_field_name=True) for s in sources],
            }
        else:
            out = docs
        if args.output == "yaml":
            sys.stdout.write(yaml.safe_dump(out, sort_keys=False))
        else:
            sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    for src in sources:
        state = f"{len(src.problems)} problem(s)" if src.problems else "ok"
        sys.stdout.write(
            f"source {src.kind} {src.location}: {state}, {src.objects} objects served, "
            f"generation {src.generation}, loaded {_when(src.loaded_at)}\n"
        )
        for pr in src.problems:
            where = f"{pr.file}:{pr.line}" if pr.line else pr.file
            sys.stdout.write(f"  {where}: {pr.reason}\n")
    if sources:
        sys.stdout.write("\n")
    rows = []
    nacks = []
    for n in nodes:
        by_type = {t.type_url.rsplit(".", 1)[-1]: t for t in n.types}
        short = {"Secret": "sds", "Cluster": "cds", "ClusterLoadAssignment": "eds", "Listener": "lds"}
        short["RouteConfiguration"] = "rds"
        states = {short.get(k, k): type_state(t) for k, t in by_type.items()}
        rows.append(
            [n.node_id, n.cluster, n.variant, _age(n.opened_at), *(states.get(t, "-") for t in _TYPES[1:])]
        )
        for t in n.types:
            # Only what is rejected now: a NACK the Envoy has since made good is history.
            nack = t.rejection if t.HasField("rejection") else None
            if nack is None and not t.sync and t.HasField("last_nack"):
                nack = t.last_nack
            if nack is not None:
                nacks.append(
                    f"{n.node_id} {short.get(t.type_url.rsplit('.', 1)[-1], t.type_url)}: NACK of version "
                    f"{nack.version} at {_when(nack.time)}: {nack.detail.strip()}"
                )
    sys.stdout.write(table(rows, ["NODE", "CLUSTER", "VARIANT", "AGE", "CDS", "EDS", "LDS", "RDS"]))
    if nacks:
        sys.stdout.write("\n" + "\n".join(nacks) + "\n")
    return 0
