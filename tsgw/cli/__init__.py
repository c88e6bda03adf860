"""`tsgw`, the command line: run, snapshot (list/dump/diff/watch), status (one process through
its admin API, or with --cluster the whole install through the Kubernetes API), doctor,
bootstrap, crds, check, version. Each command is a thin shell over the rooms.
"""

from tsgw.cli._main import main

__all__ = ["main"]
