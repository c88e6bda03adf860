package gcp

import (
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func response(t *testing.T, n int) []byte {
	t.Helper()
	cs, _ := Clusters(n, 7)
	resp := &discovery.DiscoveryResponse{
		VersionInfo:  "v42",
		TypeUrl:      "type.googleapis.com/envoy.config.cluster.v3.Cluster",
		Nonce:        "n-9",
		Canary:       true,
		ControlPlane: &core.ControlPlane{Identifier: "cp"},
	}
	for _, c := range cs {
		a, err := anypb.New(c)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScanEnvelopeReadsTheEnvelopeAndCountsResources(t *testing.T) {
	for _, n := range []int{0, 1, 250} {
		e, err := ScanEnvelope(response(t, n))
		if err != nil {
			t.Fatal(err)
		}
		want := Envelope{VersionInfo: "v42", TypeURL: "type.googleapis.com/envoy.config.cluster.v3.Cluster", Nonce: "n-9", Resources: n}
		if e != want {
			t.Fatalf("n=%d: got %+v, want %+v", n, e, want)
		}
	}
}

func TestScanEnvelopeAgreesWithAFullDecode(t *testing.T) {
	b := response(t, 3)
	var full discovery.DiscoveryResponse
	if err := proto.Unmarshal(b, &full); err != nil {
		t.Fatal(err)
	}
	e, err := ScanEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.VersionInfo != full.VersionInfo || e.Nonce != full.Nonce || e.TypeURL != full.TypeUrl || e.Resources != len(full.Resources) {
		t.Fatalf("scan %+v disagrees with decode", e)
	}
	var c cluster.Cluster
	if err := full.Resources[2].UnmarshalTo(&c); err != nil || c.Name != "c-0002" {
		t.Fatalf("resource 2: %v %q", err, c.Name)
	}
}

func TestScanEnvelopeRejectsTruncatedAndTypelessMessages(t *testing.T) {
	b := response(t, 2)
	for _, cut := range []int{1, len(b) / 2, len(b) - 1} {
		if _, err := ScanEnvelope(b[:cut]); err == nil {
			t.Fatalf("a message cut at %d of %d bytes was accepted", cut, len(b))
		}
	}
	if _, err := ScanEnvelope(nil); err == nil {
		t.Fatal("an empty message (no type_url) was accepted")
	}
}
