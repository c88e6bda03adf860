"""The command-line shells of `tsgw status --cluster` and `tsgw doctor`: flags, a Kubernetes
client from a kubeconfig (or the in-cluster service account), one :func:`tsgw.cli._cluster.gather`,
then the pure view or checks, printed as a table, JSON or YAML."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import yaml

from tsgw.cli._cluster import ClusterFacts, gather
from tsgw.cli._clusterview import cluster_status, render
from tsgw.cli._doctor import DoctorOptions, diagnose, exit_code, format_finding

__all__ = ["add_cluster_arguments", "add_doctor_parser", "run_doctor", "run_status"]


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """``--kubeconfig``, ``--context``, ``--namespace``: which cluster and where tsgw runs in it."""
    g = p.add_argument_group("through the Kubernetes API")
    g.add_argument(
        "--kubeconfig",
        metavar="PATH",
        default=None,
        help="kubeconfig to use (default: the in-cluster service account, else $KUBECONFIG, ~/.kube/config)",
    )
    g.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    g.add_argument(
        "--namespace",
        default="tsgw-system",
        help="the operator's namespace (default %(default)s)",
    )


def add_doctor_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check an install end to end (CRDs, operator, credentials, proxies, Envoys, clocks); "
        "exit 1 on a failure",
    )
    add_cluster_arguments(p)
    p.add_argument(
        "--max-clock-skew",
        type=float,
        default=DoctorOptions().max_clock_skew,
        metavar="SECONDS",
        help="clock difference with the API server that fails (default %(default)s)",
    )
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(run=run_doctor)


async def _facts(args: argparse.Namespace) -> ClusterFacts:
    from tsgw.kube import Client

    if args.kubeconfig or args.context:
        client = await Client.from_kubeconfig(args.kubeconfig, args.context)
    else:
        client = await Client.from_environment()
    async with client:
        return await gather(client, args.namespace)


def _read(args: argparse.Namespace, command: str) -> ClusterFacts | None:
    from tsgw.kube import KubeError

    if args.kubeconfig and not Path(args.kubeconfig).is_file():
        print(f"tsgw {command}: kubeconfig {args.kubeconfig}: no such file", file=sys.stderr)
        return None

    try:
        return anyio.run(_facts, args)
    except (KubeError, OSError) as e:
        print(f"tsgw {command}: {e}", file=sys.stderr)
    except Exception as e:  # the kubeconfig loader's own errors (no file, no context)
        print(f"tsgw {command}: no Kubernetes API to talk to: {e}", file=sys.stderr)
    return None


def run_status(args: argparse.Namespace) -> int:
    """`tsgw status --cluster`."""
    facts = _read(args, "status")
    if facts is None:
        return 1
    doc = cluster_status(facts)
    if args.output == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif args.output == "yaml":
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    else:
        render(doc, sys.stdout)
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    """`tsgw doctor`: 0 when nothing fails, 1 when something does (or nothing could be read)."""
    facts = _read(args, "doctor")
    if facts is None:
        return 1
    findings = diagnose(facts, DoctorOptions(max_clock_skew=args.max_clock_skew))
    if args.output == "json":
        doc: list[dict[str, Any]] = [
            {
                "check": f.check,
                "level": f.level.value,
                "subject": f.subject,
                "message": f.message,
                "fix": f.fix,
            }
            for f in findings
        ]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for f in findings:
            sys.stdout.write(format_finding(f) + "\n")
    return exit_code(findings)
