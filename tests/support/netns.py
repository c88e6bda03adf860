"""Private network namespaces: moved to tools/netns.py so that `just run` (tools/standalone.py)
uses the same helper without importing the tests package; re-exported here for the tests."""

from tools.netns import _LIVE, Namespace, NetNS, _entered, _Forwarder, delete_all, live_namespaces

__all__ = ["_LIVE", "Namespace", "NetNS", "_Forwarder", "_entered", "delete_all", "live_namespaces"]
