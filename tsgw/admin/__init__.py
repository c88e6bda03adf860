"""The operator's debug API (gRPC, proto/tsgw/admin/v1): snapshots, per-Envoy ACK/NACK state and
the model, served on its own port for the `tsgw` CLI.

:class:`AdminService` answers from the xDS snapshot cache and ADS server; :class:`AdminClient`
is what `tsgw snapshot` and `tsgw status` use.
"""

from tsgw._proto.tsgw.admin.v1 import admin_pb2 as messages
from tsgw.admin._client import AdminClient
from tsgw.admin._errors import AdminError, AdminNotFoundError, AdminUnavailableError
from tsgw.admin._service import AdminService

DEFAULT_ADDRESS = "127.0.0.1:9911"
"""Where `tsgw` serves the admin API unless told otherwise (loopback only)."""

__all__ = [
    "DEFAULT_ADDRESS",
    "AdminClient",
    "AdminError",
    "AdminNotFoundError",
    "AdminService",
    "AdminUnavailableError",
    "messages",
]
