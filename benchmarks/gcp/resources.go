// Package gcp holds what both benchmark programs share: the resources of one push.
package gcp

import (
	"fmt"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Clusters builds n EDS clusters with an HTTP health check; push makes every cluster differ
// from the previous push (per_connection_buffer_limit_bytes), the same shape benchmarks/xds.py
// builds on the Python side.
func Clusters(n, push int) ([]*cluster.Cluster, []*endpoint.ClusterLoadAssignment) {
	cs := make([]*cluster.Cluster, 0, n)
	las := make([]*endpoint.ClusterLoadAssignment, 0, n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("c-%04d", i)
		cs = append(cs, &cluster.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
			ConnectTimeout:       durationpb.New(time.Second),
			EdsClusterConfig: &cluster.Cluster_EdsClusterConfig{
				EdsConfig: &core.ConfigSource{
					ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
					ResourceApiVersion:    core.ApiVersion_V3,
				},
			},
			PerConnectionBufferLimitBytes: wrapperspb.UInt32(uint32(32768 + push)),
			HealthChecks: []*core.HealthCheck{{
				Timeout:            durationpb.New(time.Second),
				Interval:           durationpb.New(60 * time.Second),
				UnhealthyThreshold: wrapperspb.UInt32(2),
				HealthyThreshold:   wrapperspb.UInt32(1),
				HealthChecker: &core.HealthCheck_HttpHealthCheck_{
					HttpHealthCheck: &core.HealthCheck_HttpHealthCheck{Path: "/healthz"},
				},
			}},
		})
		las = append(las, &endpoint.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
						Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
							Address:       "127.0.0.1",
							PortSpecifier: &core.SocketAddress_PortValue{PortValue: 9},
						}}},
					}},
				}},
			}},
		})
	}
	return cs, las
}
