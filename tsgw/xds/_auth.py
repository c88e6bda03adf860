"""Who may read a node group's configuration: per-group bearer tokens on the ADS stream.

Once the xDS server hands out private keys over SDS, an unauthenticated port would let any pod
that reaches it claim another group's node cluster and read that group's keys and routes. So
every stream carries, in its gRPC initial metadata, ``authorization: Bearer <token>``, where the
token is ``v1.`` + base64url(HMAC-SHA256(key, "tsgw-xds\\0" + group)) for the node group the
snapshot cache maps the stream's node to (tsgw: the node cluster ``<group>.<namespace>``).
The server recomputes it for the group the node claims and compares in constant time: a token
opens its own group and no other, with no token store, and rotating ``key`` revokes every
token at once. Envoy sends the header from its bootstrap (``GrpcService.initial_metadata``).

Why not ServiceAccount tokens with TokenReview: that costs an API call per stream (or a cache)
and ties the xDS library to Kubernetes; mTLS needs a CA and certificate rotation for every
group. An HMAC needs one Secret (the key) that only the operator reads, and per group a Secret
holding that group's token, which only the group's pods mount.

Refusals (``PERMISSION_DENIED``, nothing sent) are counted by reason in
``tsgw_xds_auth_refused_total``: ``missing`` (no authorization header), ``malformed`` (not a
``Bearer v1.`` token), ``invalid`` (not the token of the group the node claims).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

__all__ = ["AUTHORIZATION", "group_token", "refusal"]

AUTHORIZATION: Final = "authorization"
_PREFIX: Final = "v1."
_CONTEXT: Final = b"tsgw-xds\0"


def group_token(key: bytes, group: str) -> str:
    """The bearer token that opens ``group``'s configuration (and nothing else)."""
    if not key:
        raise ValueError("an empty key signs nothing")
    mac = hmac.new(key, _CONTEXT + group.encode(), hashlib.sha256).digest()
    return _PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def refusal(key: bytes, metadata: Mapping[str, object] | None, group: str) -> str | None:
    """None when ``metadata`` (a stream's gRPC metadata) carries ``group``'s token; else why
    not (a metric label)."""
    header = (metadata or {}).get(AUTHORIZATION)
    if not header:
        return "missing"
    if not isinstance(header, str):
        return "malformed"
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(_PREFIX):
        return "malformed"
    if not hmac.compare_digest(token.strip().encode(), group_token(key, group).encode()):
        return "invalid"
    return None
