// Command reconcile is the Go side of `just bench reconcile` (benchmarks/reconcile.py).
//
// The Widgets (widgets.<group>/v1, a status subresource) already exist when it starts. Each one
// needs the same two writes: server-side apply one owned ConfigMap "<name>-config" with
// data.size = spec.size, then a status update setting the Ready condition and observedGeneration.
//
//	-mode controller  controller-runtime: a Manager with one controller, For(Widget,
//	                  GenerationChanged) and Owns(ConfigMap), -workers concurrent reconciles,
//	                  reading from its cache and skipping writes already done (the workload of
//	                  tsgw's benchmark controller). The clock runs from Manager.Start until every
//	                  Widget in the cache is Ready; then -settle seconds count reconciles that
//	                  should not happen.
//	-mode writer      the bare writer: the Widgets are listed before the clock, then -workers
//	                  goroutines do the two writes for each, nothing else: the API server's own
//	                  write limit for this workload at that concurrency.
//
// Writes are every non-GET request the program's HTTP transport sends after the clock starts;
// conflicts the responses among them that were 409 (a write based on a stale cached object).
// Prints one JSON line: converge_s, writes_per_object, and for the controller
// conflicts_per_object, reconciles_per_object and reconciles_after_converge.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

const fieldManager = "widget-controller"

var writes, conflicts atomic.Int64

type counting struct{ next http.RoundTripper }

func (c counting) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writes.Add(1)
	}
	resp, err := c.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusConflict {
		conflicts.Add(1)
	}
	return resp, err
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

type workload struct {
	c   client.Client
	gvk schema.GroupVersionKind
}

func (w workload) newWidget() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(w.gvk)
	return u
}

// applyConfigMap server-side applies the Widget's owned ConfigMap.
func (w workload) applyConfigMap(ctx context.Context, obj *unstructured.Unstructured, data map[string]string) error {
	ac := corev1ac.ConfigMap(obj.GetName()+"-config", obj.GetNamespace()).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(w.gvk.GroupVersion().String()).
			WithKind(w.gvk.Kind).
			WithName(obj.GetName()).
			WithUID(obj.GetUID()).
			WithController(true).
			WithBlockOwnerDeletion(true)).
		WithData(data)
	return w.c.Apply(ctx, ac, client.FieldOwner(fieldManager), client.ForceOwnership)
}

// setReady sets the Ready condition and observedGeneration; false when both were already so.
func setReady(obj *unstructured.Unstructured) bool {
	gen := obj.GetGeneration()
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	observed, _, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" {
			og, _ := m["observedGeneration"].(int64)
			if m["status"] == "True" && og == gen && observed == gen {
				return false
			}
		}
	}
	ready := map[string]any{
		"type":               "Ready",
		"status":             "True",
		"reason":             "ConfigApplied",
		"message":            "",
		"observedGeneration": gen,
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}
	kept := []any{ready}
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] != "Ready" {
			kept = append(kept, c)
		}
	}
	_ = unstructured.SetNestedSlice(obj.Object, kept, "status", "conditions")
	_ = unstructured.SetNestedField(obj.Object, gen, "status", "observedGeneration")
	return true
}

func isReady(obj *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Ready" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func sizeData(obj *unstructured.Unstructured) map[string]string {
	size, _, _ := unstructured.NestedInt64(obj.Object, "spec", "size")
	return map[string]string{"size": strconv.FormatInt(size, 10)}
}

type reconciler struct {
	workload
	reconciles atomic.Int64
}

func (r *reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	r.reconciles.Add(1)
	obj := r.newWidget()
	if err := r.c.Get(ctx, req.NamespacedName, obj); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	data := sizeData(obj)
	var have corev1.ConfigMap
	err := r.c.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: req.Name + "-config"}, &have)
	if apierrors.IsNotFound(err) || (err == nil && !equal(have.Data, data)) {
		if err := r.applyConfigMap(ctx, obj, data); err != nil {
			return reconcile.Result{}, err
		}
	} else if err != nil {
		return reconcile.Result{}, err
	}
	if setReady(obj) {
		if err := r.c.Status().Update(ctx, obj); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func runController(cfg *rest.Config, w workload, ns string, n, workers int, settle, timeout time.Duration) map[string]any {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics: metricsserver.Options{BindAddress: "0"},
		// Widgets are unstructured: without this every Get and List of one goes to the API server.
		Client:                 client.Options{Cache: &client.CacheOptions{Unstructured: true}},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fail("manager: %v", err)
	}
	w.c = mgr.GetClient()
	r := &reconciler{workload: w}
	err = builder.ControllerManagedBy(mgr).
		For(w.newWidget(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.ConfigMap{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
	if err != nil {
		fail("controller: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writesBefore, conflictsBefore := writes.Load(), conflicts.Load()
	t0 := time.Now()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	deadline := time.After(timeout)
	for {
		select {
		case err := <-done:
			fail("manager stopped: %v", err)
		case <-deadline:
			fail("not all %d Widgets Ready within %s", n, timeout)
		case <-time.After(20 * time.Millisecond):
		}
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			continue
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(w.gvk.GroupVersion().WithKind(w.gvk.Kind + "List"))
		if err := mgr.GetClient().List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
			fail("list: %v", err)
		}
		ready := 0
		for i := range list.Items {
			if isReady(&list.Items[i]) {
				ready++
			}
		}
		if ready >= n {
			break
		}
	}
	convergeS := time.Since(t0).Seconds()
	wrote, conflicted := writes.Load()-writesBefore, conflicts.Load()-conflictsBefore
	reconciles := r.reconciles.Load()
	time.Sleep(settle)
	after := r.reconciles.Load() - reconciles
	return map[string]any{
		"converge_s":                convergeS,
		"writes_per_object":         float64(wrote) / float64(n),
		"conflicts_per_object":      float64(conflicted) / float64(n),
		"reconciles_per_object":     float64(reconciles) / float64(n),
		"reconciles_after_converge": after,
		"settle_s":                  settle.Seconds(),
	}
}

func runWriter(cfg *rest.Config, w workload, ns string, n, workers int, timeout time.Duration) map[string]any {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		fail("client: %v", err)
	}
	w.c = c
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(w.gvk.GroupVersion().WithKind(w.gvk.Kind + "List"))
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		fail("list: %v", err)
	}
	if len(list.Items) != n {
		fail("%d Widgets, want %d", len(list.Items), n)
	}
	items := make(chan *unstructured.Unstructured, n)
	for i := range list.Items {
		items <- &list.Items[i]
	}
	close(items)
	writesBefore := writes.Load()
	t0 := time.Now()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for obj := range items {
				if err := w.applyConfigMap(ctx, obj, sizeData(obj)); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				setReady(obj)
				if err := c.Status().Update(ctx, obj); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		fail("write: %v", err)
	}
	return map[string]any{
		"converge_s":        time.Since(t0).Seconds(),
		"writes_per_object": float64(writes.Load()-writesBefore) / float64(n),
	}
}

func main() {
	// Its own flag set: controller-runtime registers -kubeconfig on the global one.
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the API server")
	mode := fs.String("mode", "controller", "controller (controller-runtime) or writer (bare writes)")
	group := fs.String("group", "bench.tsgw.io", "API group of the Widget CRD")
	namespace := fs.String("namespace", "bench", "namespace of the Widgets")
	objects := fs.Int("objects", 1000, "Widgets expected")
	workers := fs.Int("workers", 16, "concurrent reconciles or writers")
	settle := fs.Duration("settle", 10*time.Second, "after convergence, how long to count reconciles")
	timeout := fs.Duration("timeout", 10*time.Minute, "deadline for convergence")
	_ = fs.Parse(os.Args[1:])

	ctrl.SetLogger(logrDiscard())
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit, as tsgw's client has none by default
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return counting{rt} })
	w := workload{gvk: schema.GroupVersionKind{Group: *group, Version: "v1", Kind: "Widget"}}
	var out map[string]any
	switch *mode {
	case "controller":
		out = runController(cfg, w, *namespace, *objects, *workers, *settle, *timeout)
	case "writer":
		out = runWriter(cfg, w, *namespace, *objects, *workers, *timeout)
	default:
		fail("unknown -mode %q", *mode)
	}
	out["mode"] = *mode
	out["workers"] = *workers
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("encode: %v", err)
	}
}
