"""tsgw: a Kubernetes operator that connects Kubernetes to a Tailscale network with Envoy as the data plane.

The package is organised in rooms (see docs/architecture.md). Three of them are libraries that
know one outside world each and could be published alone: :mod:`tsgw.kube` (Kubernetes),
:mod:`tsgw.xds` (Envoy's xDS) and :mod:`tsgw.tailscale` (Tailscale and Headscale). The rest
build the operator on top of them.
"""

from tsgw._version import __version__

__all__ = ["__version__"]
