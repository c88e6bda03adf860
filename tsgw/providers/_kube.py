"""Desired state from the Kubernetes API: the manager's shared informers turned into pipeline
updates. Runs on every replica (the pipeline serves xDS everywhere; only controllers need the
lease).

What it watches: tsgw's five kinds (gateway.tailscale.com/v1alpha1), core Services,
discovery.k8s.io EndpointSlices, Secrets of type ``kubernetes.io/tls`` (field selector: TLS ports'
certificates; no other Secret is cached) and gateway.networking.k8s.io Gateways when that CRD is
served (TailscaleGateway reads them; a cluster without Gateway API is fine). The informers are the
manager's shared ones, so controllers read the same caches without a second watch.

Semantics:

- **No partial world.** The first update waits until every informer has synced: a translation
  of half a cache would remove the groups of objects not listed yet, and their Envoys would
  lose their configuration.
- **Debounced.** Any add, update or delete marks the world dirty; an update follows after
  ``debounce`` of quiet, and at most ``max_delay`` after the first change of a burst (a rolling
  update of a Service with 500 endpoints is one translation, not 500).
- **Whole state, cheap.** Each update hands the pipeline every cached object; the incremental
  Translator recognises unchanged objects by (uid, resourceVersion, generation), so an update
  costs about what changed.
- **Tailnet facts and auth keys** come from ``facts`` (the tailnet controller's published facts;
  default: none), read at each update.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import anyio
import structlog

from tsgw import api
from tsgw.kube import (
    ENDPOINTSLICES,
    SECRETS,
    SERVICES,
    HandlerFuncs,
    Informer,
    InformerOptions,
    Manager,
    RawObject,
    Resource,
)
from tsgw.pipeline import Update
from tsgw.translate import Inputs, TailnetFacts

__all__ = ["GATEWAYS", "KubeProvider", "KubeProviderOptions", "tsgw_resources"]

log = structlog.get_logger("tsgw.providers.kube")

GATEWAYS = Resource("gateway.networking.k8s.io/v1", "Gateway", "gateways")
"""Gateway API Gateways (read by TailscaleGateway)."""


TLS_SECRETS = "type=kubernetes.io/tls"
"""The Secrets the provider watches: those of type kubernetes.io/tls only (the API server
filters by this field selector), never the cluster's other Secrets; translation reads only the
ones a TLS port names."""


def tsgw_resources() -> tuple[Resource, ...]:
    """The resources of tsgw's own kinds."""
    return tuple(Resource(api.API_VERSION, k.kind, k.plural, k.namespaced) for k in api.KINDS)


@dataclass(frozen=True)
class KubeProviderOptions:
    """How the Kubernetes provider batches changes."""

    debounce: float = 0.05
    """Quiet time after a change before an update is made, in seconds. Default: 0.05."""
    max_delay: float = 0.5
    """Longest an update waits after the first change of a burst, in seconds. Default: 0.5."""
    gateways: bool = True
    """Watch Gateway API Gateways (only if their CRD is served). Default: True."""


FactsSource = Callable[[], tuple[Mapping[str, TailnetFacts], Mapping[str, str]]]
"""Returns (tailnet name → facts, proxy pod name → auth key) as known now."""


def _no_facts() -> tuple[Mapping[str, TailnetFacts], Mapping[str, str]]:
    return {}, {}


class KubeProvider:
    """Informers → :class:`tsgw.pipeline.Update` values."""

    def __init__(
        self,
        manager: Manager,
        options: KubeProviderOptions | None = None,
        *,
        facts: FactsSource = _no_facts,
        gateways_served: bool = False,
    ) -> None:
        self.options = options or KubeProviderOptions()
        self._facts = facts
        self._changed = anyio.Event()
        self._first_change = 0.0
        self.generation = 0
        handler = HandlerFuncs(
            add=lambda obj, initial: self._mark(),
            update=lambda old, new: self._mark(),
            delete=lambda obj: self._mark(),
        )
        self.own: list[Informer] = [manager.informer(r) for r in tsgw_resources()]
        self.services = manager.informer(SERVICES)
        self.slices = manager.informer(ENDPOINTSLICES)
        self.gateways = manager.informer(GATEWAYS) if gateways_served and self.options.gateways else None
        self.tls_secrets = manager.informer(SECRETS, InformerOptions(field_selector=TLS_SECRETS))
        for inf in self.informers():
            inf.add_handler(handler)

    def informers(self) -> list[Informer]:
        out = [*self.own, self.services, self.slices, self.tls_secrets]
        if self.gateways is not None:
            out.append(self.gateways)
        return out

    def mark(self) -> None:
        """Make an update soon even though no object changed (new tailnet facts or keys)."""
        self._mark()

    def _mark(self) -> None:
        if not self._changed.is_set():
            self._first_change = time.monotonic()
            self._changed.set()

    def snapshot(self) -> Update:
        """Every cached object, as one update."""
        objects: list[RawObject] = []
        for inf in self.own:
            objects.extend(inf.store)
        tailnets, keys = self._facts()
        self.generation += 1
        inputs = Inputs(
            objects=objects,
            services=list(self.services.store),
            endpoint_slices=list(self.slices.store),
            gateways=list(self.gateways.store) if self.gateways is not None else [],
            tailnets=tailnets,
            auth_keys=keys,
            secrets=list(self.tls_secrets.store),
        )
        return Update(inputs, self.generation)

    async def updates(self) -> AsyncIterator[Update]:
        """The first update once every informer has synced, then one per debounced burst of
        changes, forever."""
        for inf in self.informers():
            await inf.wait_for_sync()
        self._changed = anyio.Event()
        log.info("caches synced", objects=sum(len(i.store) for i in self.informers()))
        yield self.snapshot()
        while True:
            await self._changed.wait()
            deadline = self._first_change + self.options.max_delay
            # Wait for a quiet spell, bounded by max_delay from the first change.
            while True:
                quiet = anyio.Event()
                self._changed = quiet
                now = time.monotonic()
                wait = min(self.options.debounce, max(0.0, deadline - now))
                with anyio.move_on_after(wait):
                    await quiet.wait()
                if not quiet.is_set() or time.monotonic() >= deadline:
                    break
            self._changed = anyio.Event()
            yield self.snapshot()
