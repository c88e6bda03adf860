// loadclient: N ADS streams (state of the world, CDS by wildcard), each on its own gRPC
// connection as real Envoys are, each ACKing every response at once.
//
// It is built to cost the same for every server and as little as possible: responses arrive as
// raw bytes (a pass-through gRPC codec) and only their envelope is read (gcp.ScanEnvelope:
// version, nonce, type, resource count), which is all an ACK needs. One response in -sample
// (per stream, the first always) is fully decoded and checked: the envelope agrees with the
// decode and every resource is a Cluster with a name.
//
// stdout: "connected N" once every stream has its first response; on stdin "stats", the line
// "stats <responses> <sampled> <bad> <streams with a first response>"; exits when stdin closes.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	gcp "tsgw.invalid/benchmarks/gcp"
)

// raw is a gRPC codec that sends and receives the message bytes as they are.
type raw struct{}

func (raw) Name() string { return "proto" }

func (raw) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }

func (raw) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = data
	return nil
}

var (
	responses atomic.Int64
	sampled   atomic.Int64
	bad       atomic.Int64
	started   atomic.Int64
)

const method = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

// check fully decodes one response and compares it with its envelope.
func check(b []byte, e gcp.Envelope) error {
	var full discovery.DiscoveryResponse
	if err := proto.Unmarshal(b, &full); err != nil {
		return err
	}
	if full.VersionInfo != e.VersionInfo || full.Nonce != e.Nonce || full.TypeUrl != e.TypeURL || len(full.Resources) != e.Resources {
		return fmt.Errorf("envelope %+v disagrees with the decoded response", e)
	}
	for _, a := range full.Resources {
		var c cluster.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			return err
		}
		if c.Name == "" {
			return fmt.Errorf("a cluster without a name")
		}
	}
	return nil
}

func run(ctx context.Context, addr string, id int, group string, sample int, ready *sync.WaitGroup) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(4<<20), grpc.WithInitialConnWindowSize(4<<20),
		// WaitForReady: a connection reset while the server is busy accepting hundreds of
		// others is retried (as an Envoy reconnects), not a stream lost before it started.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.ForceCodec(raw{}), grpc.WaitForReady(true)))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	desc := &grpc.StreamDesc{StreamName: "StreamAggregatedResources", ClientStreams: true, ServerStreams: true}
	stream, err := conn.NewStream(ctx, desc, method)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stream %d: %v\n", id, err)
		ready.Done()
		return
	}
	node := &core.Node{Id: fmt.Sprintf("load-%d", id), Cluster: group}
	first, err := proto.Marshal(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType})
	if err != nil {
		panic(err)
	}
	if err := stream.SendMsg(&first); err != nil {
		panic(err)
	}
	for k := 0; ; k++ {
		var b []byte
		if err := stream.RecvMsg(&b); err != nil {
			if k == 0 {
				ready.Done()
			}
			return
		}
		e, err := gcp.ScanEnvelope(b)
		responses.Add(1)
		if err != nil {
			bad.Add(1)
			fmt.Fprintf(os.Stderr, "stream %d: %v\n", id, err)
			return
		}
		if k == 0 || (k+id)%sample == 0 { // staggered: every push has a few streams checked
			sampled.Add(1)
			if err := check(b, e); err != nil {
				bad.Add(1)
				fmt.Fprintf(os.Stderr, "stream %d: %v\n", id, err)
			}
		}
		ack, err := proto.Marshal(&discovery.DiscoveryRequest{TypeUrl: e.TypeURL, VersionInfo: e.VersionInfo, ResponseNonce: e.Nonce})
		if err != nil {
			panic(err)
		}
		if err := stream.SendMsg(&ack); err != nil {
			return
		}
		if k == 0 {
			started.Add(1)
			ready.Done()
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18000", "ADS server")
	n := flag.Int("streams", 100, "number of streams (one connection each)")
	group := flag.String("group", "bench", "node cluster")
	sample := flag.Int("sample", 50, "fully decode and check one response in this many per stream")
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	var ready sync.WaitGroup
	ready.Add(*n)
	for i := 0; i < *n; i++ {
		go run(ctx, *addr, i, *group, max(1, *sample), &ready)
	}
	go func() {
		ready.Wait()
		fmt.Printf("connected %d\n", *n)
	}()
	in := bufio.NewScanner(os.Stdin) // "stats" is answered while streams still connect, too
	for in.Scan() {
		if strings.TrimSpace(in.Text()) == "stats" {
			fmt.Printf("stats %d %d %d %d\n", responses.Load(), sampled.Load(), bad.Load(), started.Load())
		}
	}
	cancel()
}
