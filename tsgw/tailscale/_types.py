"""Plain data that crosses the client's boundary: requests, answers, credentials, options.

Every type is a frozen dataclass so the operator can compare desired with observed state
and pass values between tasks without copying. Secrets (``AuthKey.key``, credentials) are
kept out of ``repr`` so an accidental log of a value does not leak them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "APIKey",
    "AuthKey",
    "AuthKeyRequest",
    "Capabilities",
    "ClientOptions",
    "Device",
    "OAuthClientCredentials",
    "RetryOptions",
    "TailscaleService",
    "User",
]


@dataclass(frozen=True)
class OAuthClientCredentials:
    """An OAuth client (client-credentials grant) of Tailscale's API.

    The operator's normal credential: its tokens live one hour and are re-minted shortly
    before they expire; keys minted with them are tailnet-owned and must be tagged.
    """

    client_id: str
    """The client ID; when empty it is taken from the secret (``tskey-client-<id>-<rand>``)."""
    client_secret: str = field(repr=False)
    """The secret (``tskey-client-...``); never logged, never in ``repr``."""
    scopes: tuple[str, ...] = ()
    """Narrow the token to these scopes (sent as ``scope``). Default: the client's own scopes."""
    tags: tuple[str, ...] = ()
    """Narrow the token to these tags (sent as ``tags``). Default: the client's own tags."""

    def resolved_client_id(self) -> str:
        """The client ID, derived from the secret's middle part when not given."""
        if self.client_id:
            return self.client_id
        m = re.fullmatch(r"tskey-client-([A-Za-z0-9]+)-.+", self.client_secret)
        return m.group(1) if m else ""


@dataclass(frozen=True)
class APIKey:
    """A long-lived API access token: Tailscale's ``tskey-api-...`` or Headscale's API key."""

    key: str = field(repr=False)
    """The token; never logged, never in ``repr``."""


@dataclass(frozen=True)
class RetryOptions:
    """How a request is retried on 429, 5xx and transport errors (never on other 4xx).

    Minting an auth key, the one non-idempotent call, is sent again at once only after a 429
    or a failure before sending; after a 5xx or a lost answer the client first revokes what
    it may have minted (``Client.create_auth_key``). ``attempts`` bounds those tries too.
    """

    attempts: int = 5
    """Tries per request, the first included. Default 5."""
    backoff_initial: float = 0.5
    """First exponential backoff in seconds, when the server gave no Retry-After. Default 0.5."""
    backoff_max: float = 30.0
    """Cap of the exponential backoff in seconds. Default 30."""
    retry_after_max: float = 300.0
    """Cap on an honoured Retry-After in seconds (a longer hint surfaces as
    :class:`~tsgw.tailscale.RateLimitedError` right away, for the caller to requeue). Default 300."""


@dataclass(frozen=True)
class ClientOptions:
    """Where and how a client talks to its control plane."""

    base_url: str = ""
    """The API's origin, without ``/api/...``. Default: ``https://api.tailscale.com`` for
    Tailscale; required for Headscale (its ``server_url``)."""
    tailnet: str = "-"
    """The tailnet in ``/tailnet/{tailnet}/...`` paths. Default ``-``: the credential's own."""
    timeout: float = 30.0
    """Per-request timeout in seconds (connect, read, write). Default 30."""
    retry: RetryOptions = field(default_factory=RetryOptions)
    """Retry policy. Default :class:`RetryOptions` ()."""
    token_refresh_margin: float = 300.0
    """Re-mint an OAuth token when it has less than this many seconds left. Default 300
    (tokens live 3600 s; golang.org/x/oauth2 uses a 10 s margin, we prefer slack for clock skew)."""
    headscale_user: str = ""
    """Headscale only: the user (name or numeric id) that owns untagged pre-auth keys.
    Default empty: only tagged keys can be created (tagged keys need no user since 0.28)."""
    name: str = ""
    """The client's ``tailnet`` label in ``tsgw_tailscale_*`` metrics (the controllers pass the
    TailscaleTailnet object's name). Default empty."""


@dataclass(frozen=True)
class AuthKeyRequest:
    """What to mint. Defaults are the proxy's: single-use, pre-authorized, not ephemeral."""

    tags: tuple[str, ...] = ()
    """Tags every device joining with the key gets. Required for OAuth-minted keys. Default ()."""
    reusable: bool = False
    """Whether several devices may join with it. Default False (one key per replica)."""
    ephemeral: bool = False
    """Whether devices are removed when they go offline. Default False."""
    preauthorized: bool = True
    """Whether devices skip device approval. Default True. (Headscale: always true.)"""
    expiry_seconds: int | None = None
    """Lifetime of the key (not of the device). Default None: the server's (Tailscale: 90
    days); Headscale needs a value, so 90 days is sent."""
    description: str = ""
    """Free text, at most 50 characters on Tailscale. Default empty. (Headscale: dropped.)"""


@dataclass(frozen=True)
class AuthKey:
    """An auth key as the control plane reports it."""

    id: str
    """The key's id (Tailscale ``k123CNTRL``; Headscale the numeric id)."""
    key: str = field(default="", repr=False)
    """The secret itself; only present in the answer to create, never logged."""
    tags: tuple[str, ...] = ()
    reusable: bool = False
    ephemeral: bool = False
    preauthorized: bool = False
    description: str = ""
    created: datetime | None = None
    expires: datetime | None = None
    invalid: bool = False
    """True when revoked, expired or (single-use) consumed, as far as the backend says."""


@dataclass(frozen=True)
class Device:
    """A device (node) of the tailnet."""

    id: str
    """The stable node ID (Tailscale ``nodeId``; Headscale the numeric node id), the same
    value containerboot writes as ``device_id`` into the replica's state."""
    name: str = ""
    """MagicDNS name (Tailscale: the FQDN; Headscale: the given name)."""
    hostname: str = ""
    """The hostname the device reported."""
    addresses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    user: str = ""
    authorized: bool = True
    online: bool | None = None
    """Connected to control now, when the backend reports it."""
    ephemeral: bool = False
    legacy_id: str = ""
    """Tailscale's older numeric ``id``; empty on Headscale."""
    created: datetime | None = None
    last_seen: datetime | None = None
    expires: datetime | None = None
    os: str = ""
    client_version: str = ""


@dataclass(frozen=True)
class User:
    """A user of the tailnet."""

    login: str
    """What a device's ``user`` says (Tailscale: the login name; Headscale: the user's name)."""
    display_name: str = ""
    email: str = ""
    """Headscale: the user's email, which its policy file may name a user by."""
    id: str = ""


@dataclass(frozen=True)
class TailscaleService:
    """A Tailscale Service (the API's ``vip-services``): a named VIP pair hosts can serve."""

    name: str
    """``svc:<dns-label>``."""
    addrs: tuple[str, ...] = ()
    """The IPv4 and IPv6 VIPs the control plane allocated; send them back on update."""
    ports: tuple[str, ...] = ()
    """``tcp:<port>`` (or ``do-not-validate``)."""
    tags: tuple[str, ...] = ()
    comment: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, so callers degrade instead of failing at run time."""

    backend: str
    """``tailscale`` or ``headscale``."""
    services: bool
    """Tailscale Services (``vip-services``). Headscale v0.29: no."""
    oauth: bool
    """OAuth client-credentials tokens. Headscale v0.29: no (API key only)."""
    auth_key_description: bool
    """Keys keep a description. Headscale: no."""
    auth_key_preauthorized_choice: bool
    """Keys may require device approval. Headscale: no, its keys always pre-authorize."""
    device_tags: bool = True
    """Tags of a joined device can be changed."""
