"""tsgw.model's and tsgw.translate's public surfaces are curated: adding a name is a decision."""

import tsgw.model
import tsgw.translate


def test_model_exports_exactly_its_curated_names() -> None:
    assert sorted(tsgw.model.__all__) == sorted(
        [
            "AccessPolicy",
            "AccessRule",
            "AncestorVerdict",
            "CallerIdentity",
            "Cluster",
            "Condition",
            "Direction",
            "Endpoint",
            "EndpointsDetails",
            "GatewayDetails",
            "HeaderChanges",
            "Failover",
            "Listener",
            "ListenerVerdict",
            "Model",
            "ObjectRef",
            "ObjectStatus",
            "PolicyDetails",
            "Protocol",
            "ProxyGroup",
            "ProxyPod",
            "Retries",
            "Route",
            "ServicePort",
            "ServicesDetails",
            "StatusDetails",
            "TailscaleService",
            "TargetDetail",
            "TlsCertificate",
            "TlsSecret",
        ]
    )
    assert all(hasattr(tsgw.model, n) for n in tsgw.model.__all__)


def test_translate_exports_exactly_its_curated_names() -> None:
    assert sorted(tsgw.translate.__all__) == sorted(
        [
            "DEVICE_FINALIZER",
            "ROUTE_ACCESS_KIND",
            "ROUTE_KINDS",
            "access_rules",
            "resolve_access",
            "route_access_objects",
            "egress_service_name",
            "egress_service_ports",
            "Device",
            "Inputs",
            "Options",
            "Result",
            "TailnetFacts",
            "Translator",
            "User",
            "XdsResources",
            "group_name",
            "node_cluster",
            "owned_objects",
            "split_node_cluster",
            "status_body",
            "translate",
            "xds_resources",
        ]
    )
    assert all(hasattr(tsgw.translate, n) for n in tsgw.translate.__all__)
