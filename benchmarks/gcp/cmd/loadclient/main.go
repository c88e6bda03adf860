// loadclient: N ADS streams (state of the world, CDS by wildcard), each on its own gRPC
// connection as real Envoys are, each ACKing every response at once. Prints "connected N" once
// every stream has its first response, then runs until stdin closes.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func run(ctx context.Context, addr string, id int, group string, ready *sync.WaitGroup) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(4<<20), grpc.WithInitialConnWindowSize(4<<20),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stream %d: %v\n", id, err)
		ready.Done()
		return
	}
	node := &core.Node{Id: fmt.Sprintf("load-%d", id), Cluster: group}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		panic(err)
	}
	first := true
	for {
		resp, err := stream.Recv()
		if err != nil {
			if first {
				ready.Done()
			}
			return
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: resp.TypeUrl, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}
		if err := stream.Send(ack); err != nil {
			return
		}
		if first {
			first = false
			ready.Done()
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18000", "ADS server")
	n := flag.Int("streams", 100, "number of streams (one connection each)")
	group := flag.String("group", "bench", "node cluster")
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	var ready sync.WaitGroup
	ready.Add(*n)
	for i := 0; i < *n; i++ {
		go run(ctx, *addr, i, *group, &ready)
	}
	ready.Wait()
	fmt.Printf("connected %d\n", *n)
	_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	cancel()
}
