"""Where desired state comes from: Kubernetes informers, or a folder of YAML (standalone mode).

Both feed the same pipeline and the same xDS server. :class:`KubeProvider` turns the manager's
shared informers into updates (every replica). :class:`FileProvider` reads and watches a folder
(see its module for the rules: same validation as the CRDs, file and line for
every rejected file, last good content kept).
"""

from tsgw.providers._file import FileOptions, FileProvider, FolderState, Problem
from tsgw.providers._kube import GATEWAYS, KubeProvider, KubeProviderOptions, tsgw_resources

__all__ = [
    "GATEWAYS",
    "FileOptions",
    "FileProvider",
    "FolderState",
    "KubeProvider",
    "KubeProviderOptions",
    "Problem",
    "tsgw_resources",
]
