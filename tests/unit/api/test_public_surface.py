"""tsgw.api's public surface is curated: adding a name is a decision, made here."""

import tsgw.api


def test_api_exports_exactly_its_curated_names() -> None:
    assert sorted(tsgw.api.__all__) == sorted(
        [
            "API_VERSION",
            "GROUP",
            "KINDS",
            "VERSION",
            "APIError",
            "Access",
            "AccessAction",
            "AccessRule",
            "ControlPlane",
            "ControlPlaneType",
            "Credentials",
            "EgressPort",
            "EgressProtocol",
            "HTTPHeader",
            "HTTPRouting",
            "HTTPRule",
            "HeaderChanges",
            "Failover",
            "IngressBackend",
            "IngressPort",
            "Kind",
            "LocalRef",
            "Object",
            "ObjectMeta",
            "PolicyTargetRef",
            "Proxy",
            "Retries",
            "TailscaleEndpointsSpec",
            "TailscaleGatewaySpec",
            "TailscaleRoutePolicySpec",
            "TailscaleServicesSpec",
            "TailscaleTailnetSpec",
            "Target",
            "ValidationError",
            "crd",
            "crd_files",
            "crds",
            "load",
            "parse",
            "parse_duration",
        ]
    )
    for name in tsgw.api.__all__:
        assert getattr(tsgw.api, name) is not None
