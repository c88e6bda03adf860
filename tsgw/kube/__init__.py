"""The controller framework: client, informer, store, workqueue, controller, builder, manager.

Knows Kubernetes and nothing of Tailscale or Envoy; it could be published on its own. It keeps
controller-runtime's semantics and vocabulary (Reconciler, Request, Result, Manager, Builder,
Predicate) on asyncio with anyio's structured concurrency: a reflector that lists then watches by
the resourceVersion rules, a store with indexers, a deduplicating rate-limited work queue,
leader election on a Lease, health probes, metrics and an Events recorder.
"""
