"""tsgw.tailscale's public surface is a decision: this pins it."""

import tsgw.tailscale


def test_tailscale_exports_exactly_the_curated_names() -> None:
    assert sorted(tsgw.tailscale.__all__) == [
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
        "OWNER_ANNOTATION",
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
    for name in tsgw.tailscale.__all__:
        assert getattr(tsgw.tailscale, name) is not None


def test_every_api_error_is_a_tailscale_error() -> None:
    for name in (
        "AuthError",
        "ForbiddenError",
        "NotFoundError",
        "ConflictError",
        "InvalidRequestError",
        "RateLimitedError",
        "ServerError",
    ):
        cls = getattr(tsgw.tailscale, name)
        assert issubclass(cls, tsgw.tailscale.APIError)
        assert issubclass(cls, tsgw.tailscale.TailscaleError)
    assert issubclass(tsgw.tailscale.TransportError, tsgw.tailscale.TailscaleError)
    assert issubclass(tsgw.tailscale.UnsupportedError, tsgw.tailscale.TailscaleError)
    assert issubclass(tsgw.tailscale.OutcomeUnknownError, tsgw.tailscale.TailscaleError)
    assert not issubclass(tsgw.tailscale.OutcomeUnknownError, tsgw.tailscale.APIError)
