// gcp-server: go-control-plane's ADS server on one of its caches, driven over stdin by
// benchmarks/xds.py the same way as tsgw's server:
//
//	-cache snapshot  the snapshot cache (one Snapshot for the node group; every response is
//	                 serialised per stream)
//	-cache linear    one LinearCache per type (CDS, EDS) combined by a MuxCache: each resource
//	                 is serialised once, lazily, and shared by the streams
//
// "push <clusters> <label>" builds the resources, sets them, prints "pushed <label> <t0 ns>
// <cpu ns spent building the input>", and "acked <label> <t1 ns>" once every connected stream
// has ACKed the new CDS version. "streams" prints the open stream count; "acks" prints how many
// streams have ACKed the last push and how many are open; "mem" runs a GC and
// prints the Go heap in use plus goroutine stacks in bytes (runtime.MemStats).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// cpuNanos is the process's user+system CPU so far.
func cpuNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func main() {
	kind := flag.String("cache", "snapshot", "snapshot or linear (LinearCache per type in a MuxCache)")
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
	cds := cache.NewLinearCache(resource.ClusterType)
	eds := cache.NewLinearCache(resource.EndpointType)
	linearVersion := 0 // a LinearCache's version is the count of its updates
	var served cache.Cache
	switch *kind {
	case "snapshot":
		served = snapshots
	case "linear":
		served = &cache.MuxCache{
			Classify:      func(r *cache.Request) string { return r.TypeUrl },
			ClassifyDelta: func(r *cache.DeltaRequest) string { return r.TypeUrl },
			Caches:        map[string]cache.Cache{resource.ClusterType: cds, resource.EndpointType: eds},
		}
	default:
		panic("-cache must be snapshot or linear")
	}
	srv := server.NewServer(ctx, served, cb)
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
			c0 := cpuNanos()
			cs, las := gcp.Clusters(n, push)
			var crs, ers []types.Resource
			var cmap, emap map[string]types.Resource
			if *kind == "snapshot" {
				crs, ers = make([]types.Resource, len(cs)), make([]types.Resource, len(las))
				for i, c := range cs {
					crs[i] = c
				}
				for i, l := range las {
					ers[i] = l
				}
			} else {
				cmap, emap = make(map[string]types.Resource, len(cs)), make(map[string]types.Resource, len(las))
				for _, c := range cs {
					cmap[c.Name] = c
				}
				for _, l := range las {
					emap[l.ClusterName] = l
				}
			}
			build := cpuNanos() - c0
			target := label
			if *kind == "linear" {
				linearVersion++
				target = strconv.Itoa(linearVersion)
			}
			t.mu.Lock()
			t.target, t.label, t.acked, t.waiting = target, label, map[int64]bool{}, len(t.open) > 0
			t.mu.Unlock()
			t0 := time.Now().UnixNano()
			if *kind == "snapshot" {
				snap, err := cache.NewSnapshot(label, map[resource.Type][]types.Resource{
					resource.ClusterType: crs, resource.EndpointType: ers,
				})
				if err != nil {
					panic(err)
				}
				if err := snapshots.SetSnapshot(ctx, *group, snap); err != nil {
					panic(err)
				}
			} else {
				cds.SetResources(cmap)
				eds.SetResources(emap)
			}
			fmt.Fprintf(out, "pushed %s %d %d\n", label, t0, build)
			out.Flush()
		case "acks":
			t.mu.Lock()
			fmt.Fprintf(out, "acks %d %d\n", len(t.acked), len(t.open))
			t.mu.Unlock()
			out.Flush()
		case "mem":
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(out, "mem %d\n", ms.HeapAlloc+ms.StackInuse)
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
