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
            "AncestorRef",
            "Condition",
            "ControlPlane",
            "ControlPlaneType",
            "Credentials",
            "EgressPort",
            "EgressProtocol",
            "EndpointsStatus",
            "GatewayStatus",
            "HTTPHeader",
            "HTTPRouting",
            "HTTPRule",
            "HeaderChanges",
            "Failover",
            "IngressBackend",
            "IngressPort",
            "Kind",
            "ListenerStatus",
            "PolicyAncestorStatus",
            "RoutePolicyStatus",
            "ServicesStatus",
            "TargetStatus",
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
            "to_json",
        ]
    )
    for name in tsgw.api.__all__:
        assert getattr(tsgw.api, name) is not None
