"""tsgw.extension's public surface is curated."""

import dataclasses

import tsgw.extension


def test_extension_exports_exactly_the_curated_names() -> None:
    assert sorted(tsgw.extension.__all__) == sorted(
        [
            "BACKEND_KIND",
            "RBAC_FILTER",
            "ROUTE_ACCESS_KIND",
            "SERVICE",
            "ClusterAnswer",
            "ExtensionOptions",
            "ExtensionService",
            "ListenerAnswer",
            "RouteAnswer",
            "TailnetBackend",
            "contexts",
            "messages",
            "post_cluster_modify",
            "post_http_listener_modify",
            "post_route_modify",
            "post_translate_modify",
            "route_access_policy",
            "tailnet_backend",
        ]
    )


def test_options_state_every_default() -> None:
    opts = tsgw.extension.ExtensionOptions()
    assert (opts.cluster_domain, opts.dns_refresh_s) == ("cluster.local", 5.0)
    assert dataclasses.is_dataclass(opts)


def test_the_service_name_is_envoy_gateways() -> None:
    service = tsgw.extension.messages.DESCRIPTOR.services_by_name["EnvoyGatewayExtension"]
    assert service.full_name == tsgw.extension.SERVICE
    assert sorted(m.name for m in service.methods) == [
        "PostClusterModify",
        "PostEndpointsModify",
        "PostHTTPListenerModify",
        "PostRouteModify",
        "PostTranslateModify",
        "PostVirtualHostModify",
    ]
