"""Wiring: the only package that knows every room; the CLI calls it.

- :class:`Standalone` (``_standalone.py``): `tsgw run --standalone DIR`. The folder provider
  feeds the pipeline; the xDS server, the admin API and (optionally) health and metrics serve
  beside it.
- :class:`Operator` (``_kubernetes.py``): `tsgw run` against a cluster. Informers feed the same
  pipeline on every replica, which serves xDS; controllers run on the Lease holder.
"""

from tsgw.operator._kubernetes import Operator, OperatorOptions
from tsgw.operator._standalone import Standalone, StandaloneOptions

__all__ = ["Operator", "OperatorOptions", "Standalone", "StandaloneOptions"]
