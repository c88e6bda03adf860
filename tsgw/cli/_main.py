"""The `tsgw` entry point and its sub-commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tsgw._version import __version__
from tsgw.cli import _admin, _bootstrap, _clustercli, _crds, _run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tsgw", description="Tailscale gateway operator with Envoy as data plane."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("version", help="print the version and exit")
    _crds.add_parser(sub)
    _bootstrap.add_parser(sub)
    _admin.add_parsers(sub)
    _clustercli.add_doctor_parser(sub)
    _run.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `tsgw` command; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"tsgw {__version__}")
        return 0
    if args.command == "crds":
        return _crds.run(args)
    run = getattr(args, "run", None)
    if run is not None:  # commands that registered their own runner
        return int(run(args))
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
