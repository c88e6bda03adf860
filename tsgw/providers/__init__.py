"""Where desired state comes from: Kubernetes informers, or a folder of YAML (standalone mode).

Both feed the same translate pipeline and the same xDS server. :class:`FileProvider` reads and
watches a folder (see its module for the rules: same validation as the CRDs, file and line for
every rejected file, last good content kept).
"""

from tsgw.providers._file import FileOptions, FileProvider, FolderState, Problem

__all__ = ["FileOptions", "FileProvider", "FolderState", "Problem"]
