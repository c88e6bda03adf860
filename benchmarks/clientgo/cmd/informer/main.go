// Command informer is the client-go peer of `just bench informer` (benchmarks/informer.py).
//
// It starts one SharedIndexInformer on the ConfigMaps of a namespace (client-go's shared informer
// factory, no resync), waits for HasSynced, checks the store holds -objects items, and prints
// one JSON line:
//
//	sync_s               seconds from Run to HasSynced (polled every millisecond)
//	heap_kib_per_object  Go heap in use after a forced GC (runtime.ReadMemStats HeapAlloc),
//	                     after sync minus before the informer started, divided by the count
//	rss_kib_per_object   resident set size delta over the same span (includes Go's GC headroom)
//	watch_list           whether client-go's WatchListClient feature gate was on: the initial
//	                     state came as a watch stream (sendInitialEvents) rather than a LIST
//	strip_managed_fields whether a transform dropped metadata.managedFields before caching
//
// The mode is client-go's own feature gate, set by the caller through the environment
// (KUBE_FEATURE_WatchListClient=true|false; client-go v0.36 defaults it to true).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kib, _ := strconv.ParseUint(f[1], 10, 64)
			return kib * 1024
		}
	}
	return 0
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	namespace := flag.String("namespace", "bench", "namespace whose ConfigMaps are cached")
	objects := flag.Int("objects", 10000, "ConfigMaps expected in the namespace")
	strip := flag.Bool("strip-managed-fields", false, "drop metadata.managedFields before caching")
	timeout := flag.Duration("timeout", 10*time.Minute, "deadline for the initial sync")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit: the peer is not throttled where tsgw is not
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail("client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// Warm the connection and TLS, as the Python contenders do.
	if _, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		fail("warm-up list: %v", err)
	}

	heapBefore, rssBefore := heapAlloc(), rssBytes()
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(*namespace))
	inf := factory.Core().V1().ConfigMaps().Informer()
	if *strip {
		if err := inf.SetTransform(func(obj any) (any, error) {
			if a, err := meta.Accessor(obj); err == nil {
				a.SetManagedFields(nil)
			}
			return obj, nil
		}); err != nil {
			fail("transform: %v", err)
		}
	}
	t0 := time.Now()
	factory.Start(ctx.Done())
	// HasSynced polled every millisecond: cache.WaitForCacheSync polls every 100 ms, which
	// would add up to 100 ms to client-go's figure.
	for !inf.HasSynced() {
		if ctx.Err() != nil {
			fail("not synced within %s", *timeout)
		}
		time.Sleep(time.Millisecond)
	}
	syncS := time.Since(t0).Seconds()
	items := inf.GetStore().List()
	if len(items) != *objects {
		fail("store holds %d objects, want %d", len(items), *objects)
	}
	if _, ok := items[0].(*corev1.ConfigMap); !ok {
		fail("store holds %T", items[0])
	}
	items = nil
	heapAfter, rssAfter := heapAlloc(), rssBytes()
	n := float64(*objects)
	out := map[string]any{
		"sync_s":               round(syncS, 3),
		"heap_kib_per_object":  round((float64(heapAfter)-float64(heapBefore))/n/1024, 2),
		"rss_kib_per_object":   round((float64(rssAfter)-float64(rssBefore))/n/1024, 2),
		"watch_list":           clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient),
		"strip_managed_fields": *strip,
	}
	runtime.KeepAlive(inf)
	cancel()
	factory.Shutdown()
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("encode: %v", err)
	}
}

func round(x float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(x*p+0.5)) / p
}
