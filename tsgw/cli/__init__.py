"""`tsgw`, the command line: run, snapshot (list/dump/diff/watch), status, bootstrap, crds, check,
version. Each command is a thin shell over the rooms; the debugging commands talk to a running
operator's admin API.
"""

from tsgw.cli._main import main

__all__ = ["main"]
