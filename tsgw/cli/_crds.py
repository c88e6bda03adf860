"""`tsgw crds`: print the CRD manifests generated from tsgw.api, or write the committed copy."""

from __future__ import annotations

import argparse
import pathlib
import sys

from tsgw.api import crd_files


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `crds` sub-command."""
    p = sub.add_parser("crds", help="print the CRD manifests (multi-document YAML)")
    p.add_argument(
        "--write",
        metavar="DIR",
        type=pathlib.Path,
        help="write one file per CRD and a kustomization.yaml into DIR instead of printing",
    )


def run(args: argparse.Namespace) -> int:
    """Print or write the CRDs; returns the exit code."""
    files = crd_files()
    if args.write is not None:
        out: pathlib.Path = args.write
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text)
        return 0
    docs = [text for name, text in files.items() if name != "kustomization.yaml"]
    sys.stdout.write("---\n".join(docs))
    return 0
