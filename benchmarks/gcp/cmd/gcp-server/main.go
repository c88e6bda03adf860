// gcp-server: go-control-plane's snapshot cache and ADS server, driven over stdin by
// benchmarks/xds.py the same way as tsgw's server: "push <clusters> <label>" builds the
// resources, then times SetSnapshot until every connected stream has ACKed the new CDS version.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	gcp "tsgw.invalid/benchmarks/gcp"
)

// byCluster groups Envoys by node.cluster, as tsgw does: one snapshot for the whole group.
type byCluster struct{}

func (byCluster) ID(n *core.Node) string {
	if n == nil {
		return ""
	}
	return n.Cluster
}

type tracker struct {
	mu      sync.Mutex
	open    map[int64]bool
	target  string
	label   string
	acked   map[int64]bool
	waiting bool
	out     *bufio.Writer
}

func (t *tracker) request(id int64, req *discovery.DiscoveryRequest) {
	if req.TypeUrl != resource.ClusterType || req.ErrorDetail != nil || req.ResponseNonce == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.waiting || req.VersionInfo != t.target {
		return
	}
	t.acked[id] = true
	if len(t.acked) >= len(t.open) {
		t.waiting = false
		fmt.Fprintf(t.out, "acked %s %d\n", t.label, time.Now().UnixNano())
		t.out.Flush()
	}
}

func main() {
	port := flag.Int("port", 0, "listen port on 127.0.0.1")
	group := flag.String("group", "bench", "node cluster to serve")
	flag.Parse()
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	t := &tracker{open: map[int64]bool{}, acked: map[int64]bool{}, out: out}
	cb := server.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			t.mu.Lock()
			t.open[id] = true
			t.mu.Unlock()
			return nil
		},
		StreamClosedFunc: func(id int64, _ *core.Node) {
			t.mu.Lock()
			delete(t.open, id)
			t.mu.Unlock()
		},
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			t.request(id, req)
			return nil
		},
	}
	snapshots := cache.NewSnapshotCache(true, byCluster{}, nil)
	srv := server.NewServer(ctx, snapshots, cb)
	g := grpc.NewServer(grpc.MaxConcurrentStreams(1<<20), grpc.MaxRecvMsgSize(64<<20))
	discovery.RegisterAggregatedDiscoveryServiceServer(g, srv)
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		panic(err)
	}
	go func() { _ = g.Serve(lis) }()
	fmt.Fprintf(out, "listening %d\n", lis.Addr().(*net.TCPAddr).Port)
	out.Flush()

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "push":
			n, _ := strconv.Atoi(f[1])
			push, _ := strconv.Atoi(f[2])
			label := f[2]
			cs, las := gcp.Clusters(n, push)
			crs := make([]types.Resource, len(cs))
			for i, c := range cs {
				crs[i] = c
			}
			ers := make([]types.Resource, len(las))
			for i, l := range las {
				ers[i] = l
			}
			t.mu.Lock()
			t.target, t.label, t.acked, t.waiting = label, label, map[int64]bool{}, len(t.open) > 0
			t.mu.Unlock()
			t0 := time.Now().UnixNano()
			snap, err := cache.NewSnapshot(label, map[resource.Type][]types.Resource{
				resource.ClusterType: crs, resource.EndpointType: ers,
			})
			if err != nil {
				panic(err)
			}
			if err := snapshots.SetSnapshot(ctx, *group, snap); err != nil {
				panic(err)
			}
			fmt.Fprintf(out, "pushed %s %d\n", label, t0)
			out.Flush()
		case "streams":
			t.mu.Lock()
			fmt.Fprintf(out, "streams %d\n", len(t.open))
			t.mu.Unlock()
			out.Flush()
		}
	}
	g.Stop()
}
