"""The Tailscale side: one API client for Tailscale's hosted API and for Headscale.

Knows Tailscale and nothing of Kubernetes or Envoy. It holds the client (OAuth client
credentials or an API key; auth keys, devices, Tailscale Services), the auth-key lifecycle of a
proxy replica, and the tailscaled/containerboot configuration of a proxy as plain data.

    async with TailscaleClient(OAuthClientCredentials("", secret)) as ts:
        key = await ts.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))

:class:`Client` is the interface the operator depends on; :class:`TailscaleClient` and
:class:`HeadscaleClient` implement it and say what they support in ``capabilities``. Every
failure is a :class:`TailscaleError` (see ``_errors.py`` for the tree).

Importing this package loads no network library: the clients and the auth-key lifecycle (on
aiohttp and anyio) load on first use of one of their names, so pure users such as translation
(:class:`ProxyConfig`, :class:`ServePort`, :class:`HostedService`) never pull a client in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsgw._lazy import lazy

from ._errors import (
    APIError,
    AuthError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    TailscaleError,
    TransportError,
    UnsupportedError,
)
from ._ownership import (
    OWNER_ANNOTATION,
    OwnerRef,
    ServicePlan,
    owners_of,
    plan_claim,
    plan_release,
    with_owners,
)
from ._proxy import HostedService, ProxyConfig, ServePort
from ._types import (
    APIKey,
    AuthKey,
    AuthKeyRequest,
    Capabilities,
    ClientOptions,
    Device,
    OAuthClientCredentials,
    RetryOptions,
    TailscaleService,
    User,
)

__all__ = [
    "OWNER_ANNOTATION",
    "APIError",
    "APIKey",
    "AuthError",
    "AuthKey",
    "AuthKeyLifecycle",
    "AuthKeyRequest",
    "Capabilities",
    "Client",
    "ClientOptions",
    "ConflictError",
    "DeleteResult",
    "Device",
    "EnsureResult",
    "ForbiddenError",
    "HeadscaleClient",
    "HostedService",
    "InvalidRequestError",
    "MemoryStateStore",
    "NotFoundError",
    "OAuthClientCredentials",
    "OutcomeUnknownError",
    "OwnerRef",
    "ProxyConfig",
    "RateLimitedError",
    "ReplicaStateStore",
    "RetryOptions",
    "ServePort",
    "ServerError",
    "ServicePlan",
    "StateKeys",
    "TailscaleClient",
    "TailscaleError",
    "TailscaleService",
    "TransportError",
    "UnsupportedError",
    "User",
    "owners_of",
    "plan_claim",
    "plan_release",
    "with_owners",
]

_LAZY = {
    "Client": "tsgw.tailscale._client",
    "TailscaleClient": "tsgw.tailscale._client",
    "HeadscaleClient": "tsgw.tailscale._headscale",
    **{
        n: "tsgw.tailscale._lifecycle"
        for n in (
            "AuthKeyLifecycle",
            "DeleteResult",
            "EnsureResult",
            "MemoryStateStore",
            "ReplicaStateStore",
            "StateKeys",
        )
    },
}

if TYPE_CHECKING:
    from ._client import Client, TailscaleClient
    from ._headscale import HeadscaleClient
    from ._lifecycle import (
        AuthKeyLifecycle,
        DeleteResult,
        EnsureResult,
        MemoryStateStore,
        ReplicaStateStore,
        StateKeys,
    )


__getattr__, __dir__ = lazy(__name__, _LAZY, __all__)
