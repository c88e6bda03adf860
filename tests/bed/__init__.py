"""A Kubernetes test bed where pods really run: real control plane, kube-proxy and CoreDNS, and a
process kubelet, all in network namespaces (see docs/testbed.md).

    with Bed(tmpdir, BedOptions(nodes=2)) as bed:
        bed.kubectl("get", "nodes")
"""

from tests.bed._bed import Bed, BedOptions
from tests.bed._images import BACKEND_IMAGE, SHELL_IMAGE

__all__ = ["BACKEND_IMAGE", "SHELL_IMAGE", "Bed", "BedOptions"]
