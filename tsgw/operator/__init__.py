"""Wiring: the only package that knows every room; the CLI calls it.

- :class:`Standalone` (``_standalone.py``): `tsgw run --standalone DIR`. The folder provider
  feeds the pipeline; the xDS server, the admin API and (optionally) health and metrics serve
  beside it.
- The in-cluster operator (``_kubernetes.py``, next): informers feed the same pipeline on every
  replica; controllers run on the leader.
"""

from tsgw.operator._standalone import Standalone, StandaloneOptions

__all__ = ["Standalone", "StandaloneOptions"]
