"""`tsgw run` (in a cluster, or against a kubeconfig): the operator. Wiring only.

Every replica runs, under one :class:`tsgw.kube.Manager`:

- the Kubernetes provider (the manager's shared informers on tsgw's kinds, Services,
  EndpointSlices and, when served, Gateway API Gateways) feeding the pipeline;
- the pipeline (translation → one snapshot per proxy group, keyed by node cluster) and the xDS
  server every proxy Envoy connects to through the xDS Service, whichever replica it reaches;
- the admin API (loopback by default), and the manager's probes and ``/metrics`` (one registry:
  the framework's, the xDS server's and the process's metrics).

The leader (Lease ``tsgw-operator`` in the operator's namespace) also runs the controllers:
status (the pipeline's conditions, written when they change), proxy groups (owned objects
applied and pruned), tailnets (credentials, facts), auth keys and devices, and Tailscale
Services (claimed per ingress group), and the loops that enqueue them from the pipeline's
results. Losing the
Lease stops the process (controller-runtime's behaviour: the pod restarts and rejoins as a
follower), while followers keep serving xDS throughout.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import structlog
from anyio.abc import TaskStatus

from tsgw import api, translate
from tsgw._address import parse_address
from tsgw.admin import DEFAULT_ADDRESS, AdminService
from tsgw.controllers import (
    MANAGED_SELECTOR,
    TAILNET_LABEL,
    AuthKeyReconciler,
    ServiceReconciler,
    TailnetClients,
    TailnetReconciler,
    add_proxygroup_controllers,
    add_route_access_controller,
    add_status_controllers,
    auth_keys_from_secrets,
    enqueue_changed,
    enqueue_changed_groups,
    enqueue_changed_route_access,
    enqueue_changed_services,
    facts_from_configmaps,
    owner_of,
)
from tsgw.extension import ExtensionService
from tsgw.kube import (
    CONFIGMAPS,
    SECRETS,
    AlreadyExists,
    Client,
    ControllerOptions,
    HandlerFuncs,
    InformerOptions,
    KubeError,
    LeaderElectionOptions,
    Manager,
    ManagerOptions,
    NotFound,
    RawObject,
    Request,
    Resource,
    controller_managed_by,
)
from tsgw.pipeline import Pipeline, PipelineOptions, read_report
from tsgw.providers import GATEWAYS, KubeProvider, KubeProviderOptions, tsgw_resources
from tsgw.translate import TailnetFacts
from tsgw.xds import AdsServer, SnapshotCache

__all__ = ["Operator", "OperatorOptions"]

log = structlog.get_logger("tsgw.operator")

XDS_REPORT_LABEL = "gateway.tailscale.com/xds-report"
"""On each replica's report ConfigMap: the replica's identity."""
XDS_REPORT_KEY = "report.json"

_OWNING_KINDS = ("TailscaleEndpoints", "TailscaleServices", "TailscaleGateway")
_HOSTING_KINDS = ("TailscaleServices", "TailscaleGateway")
"""The kinds whose groups host a Tailscale Service."""
_NAMESPACES = Resource("v1", "Namespace", "namespaces", namespaced=False)


def _identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def report_name(identity: str) -> str:
    """The name of a replica's xDS report ConfigMap: ``tsgw-xds-<identity>`` made a DNS
    subdomain (an identity outside a pod is ``host_suffix``, and hosts may hold capitals)."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", identity.lower()).strip("-.") or "replica"
    return f"tsgw-xds-{cleaned}"[:253].rstrip("-.")


@dataclass(frozen=True)
class OperatorOptions:
    """`tsgw run` against a cluster."""

    namespace: str = "tsgw-system"
    """The operator's namespace (its Lease lives there). Default: tsgw-system."""
    xds_address: str = "0.0.0.0:18000"
    """Where the proxies' Envoys reach the ADS server (through the xDS Service). Default:
    0.0.0.0:18000."""
    admin_address: str = DEFAULT_ADDRESS
    """The admin API (`tsgw status`, `tsgw snapshot`; reach it with a port-forward). Default:
    127.0.0.1:9911."""
    extension_address: str | None = None
    """Where Envoy Gateway reaches tsgw's extension server (its ``extensionManager.service``,
    through a Service: every replica answers). Default: None (not served)."""
    health_probe_address: str | None = ":8081"
    """``/healthz`` and ``/readyz`` (ready once the caches synced). Default: :8081 (every
    interface), as controller-runtime scaffolds it."""
    metrics_address: str | None = ":8080"
    """``/metrics``. Default: :8080."""
    leader_election: bool = True
    """Run controllers only on the Lease holder. Default: True (False: a single replica runs
    them at once)."""
    lease_duration: float = 15.0
    """How long followers wait before taking over a silent leader's Lease, in seconds.
    Default: 15 (controller-runtime's)."""
    identity: str = field(default_factory=_identity)
    """This replica's name in the Lease and in its xDS report. Default: $POD_NAME, else hostname
    and a random suffix."""
    pod_uid: str = field(default_factory=lambda: os.environ.get("POD_UID", ""))
    """This replica's Pod UID: its xDS report ConfigMap is owned by the Pod, so the garbage
    collector removes a dead replica's report. Default: $POD_UID ("" : no owner)."""
    translate: translate.Options = field(default_factory=translate.Options)
    """Shapes of the proxies' objects and Envoy configuration. Default: translate.Options()."""
    provider: KubeProviderOptions = field(default_factory=KubeProviderOptions)
    """How informer events are batched into updates. Default: KubeProviderOptions()."""
    tailnet_poll_interval: float = 60.0
    """How often each tailnet's facts (devices, Tailscale Services) are polled, in seconds; a
    429 waits its Retry-After. Default: 60."""
    auth_key_workers: int = 4
    """Owners whose proxies' auth keys and devices are worked on at once, per owning kind (the
    auth-key controller's ``max_concurrent_reconciles``; one owner is never worked on twice at
    once). Each such reconcile waits on the tailnet's API (a mint, a device deletion: ~0.2-0.5 s
    against Headscale), so with one worker a group's first key waited behind another group's
    clean-up. Default: 4."""
    cluster_id: str = ""
    """This cluster's name in the owner claims on Tailscale Services (several clusters may
    host one ``svc:``). Default: "" (the UID of the ``kube-system`` namespace, read at start,
    which is unique per cluster)."""
    xds_auth: bool = True
    """Authenticate every ADS stream with its group's token (``tsgw/xds/_auth.py``): the key is
    the Secret :data:`XDS_KEY_SECRET` of the operator's namespace (made by the first replica
    that finds none; every replica reads the same), and each group's bootstrap Secret carries
    its token. Default: True."""


XDS_KEY_SECRET = "tsgw-xds-auth"
"""The operator's Secret holding the key every xDS token is derived from (``data.key``)."""


class Operator:
    """The operator of one replica."""

    def __init__(self, client: Client, options: OperatorOptions | None = None) -> None:
        self.client = client
        self.options = opts = options or OperatorOptions()
        self._xds = parse_address(opts.xds_address, what="xDS address")
        self._admin = parse_address(opts.admin_address, what="admin address")
        election = None
        if opts.leader_election:
            election = LeaderElectionOptions(
                "tsgw-operator",
                namespace=opts.namespace,
                identity=opts.identity,
                lease_duration=opts.lease_duration,
                renew_deadline=opts.lease_duration * 2 / 3,
                retry_period=max(0.2, opts.lease_duration / 7.5),
            )
        self.manager = Manager(
            client,
            ManagerOptions(
                leader_election=election,
                health_probe_bind_address=opts.health_probe_address,
                metrics_bind_address=opts.metrics_address,
            ),
        )
        self.cache = SnapshotCache()
        self.ads = AdsServer(self.cache)
        self.pipeline = Pipeline(self.cache, PipelineOptions(translate=opts.translate), ads=self.ads)
        self.admin = AdminService(self.cache, self.ads)
        self._extension = (
            parse_address(opts.extension_address, what="extension address")
            if opts.extension_address is not None
            else None
        )
        self.extension = ExtensionService()
        self.xds_port = 0
        self.admin_port = 0
        self.extension_port = 0
        self.provider: KubeProvider | None = None

    async def _gateways_served(self) -> bool:
        try:
            await self.client.discover(GATEWAYS.api_version, GATEWAYS.kind)
        except NotFound:
            log.info("Gateway API is not installed: TailscaleGateway objects will report GatewayNotFound")
            return False
        return True

    async def _xds_key(self) -> bytes:
        """The xDS token key from :data:`XDS_KEY_SECRET`, created (32 random bytes) when absent;
        a replica that loses the creation race reads the winner's."""
        ns = self.options.namespace
        for _ in range(3):
            found = await self.client.get_or_none(SECRETS, XDS_KEY_SECRET, ns)
            if found is not None:
                value = str(((found.get("data") or {}).get("key")) or "")
                key = base64.b64decode(value) if value else b""
                if len(key) < 16:
                    raise KubeError(f"Secret {ns}/{XDS_KEY_SECRET}: data.key must hold at least 16 bytes")
                return key
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": XDS_KEY_SECRET, "namespace": ns},
                "type": "Opaque",
                "data": {"key": base64.b64encode(os.urandom(32)).decode()},
            }
            try:
                await self.client.create(SECRETS, secret)
                log.info("created the xDS token key", secret=f"{ns}/{XDS_KEY_SECRET}")
            except AlreadyExists:
                pass
        raise KubeError(f"Secret {ns}/{XDS_KEY_SECRET} could not be read or created")

    async def setup(self) -> None:
        """Create the informers and controllers (they start with :meth:`run`)."""
        if self.options.xds_auth:
            # Before any translation or stream: every bootstrap carries a token of this key
            # and every stream must present one.
            key = await self._xds_key()
            self.ads.options = dataclasses.replace(self.ads.options, auth_key=key)
            self.pipeline.translator.options = dataclasses.replace(
                self.pipeline.translator.options, xds_auth_key=key
            )
        managed = InformerOptions(label_selector=MANAGED_SELECTOR)
        configmaps = self.manager.informer(CONFIGMAPS, managed)
        secrets = self.manager.informer(SECRETS, managed)
        known: dict[str, tuple[str, TailnetFacts]] = {}
        namespace = self.options.namespace

        def facts() -> tuple[dict[str, TailnetFacts], dict[str, str]]:
            nonlocal known
            known = facts_from_configmaps(configmaps.store.list(namespace), known)
            return {k: v[1] for k, v in known.items()}, auth_keys_from_secrets(secrets.store)

        self.provider = KubeProvider(
            self.manager, self.options.provider, facts=facts, gateways_served=await self._gateways_served()
        )
        mark = self.provider.mark
        changed = HandlerFuncs(add=lambda o, i: mark(), update=lambda a, b: mark(), delete=lambda o: mark())
        secrets.add_handler(changed)

        def facts_changed(obj: RawObject) -> None:
            if TAILNET_LABEL in ((obj.get("metadata") or {}).get("labels") or {}):
                mark()

        configmaps.add_handler(
            HandlerFuncs(
                add=lambda o, i: facts_changed(o),
                update=lambda a, b: facts_changed(b),
                delete=lambda o: facts_changed(o),
            )
        )
        configmaps.add_handler(
            HandlerFuncs(
                add=lambda o, i: self._remote_report(o, gone=False),
                update=lambda old, new: self._remote_report(new, gone=False),
                delete=lambda o: self._remote_report(o, gone=True),
            )
        )
        kinds = {r.kind: r for r in tsgw_resources()}
        cluster_id = await self._cluster_id()
        self.tailnet_clients = TailnetClients()
        self.tailnets = (
            controller_managed_by(self.manager)
            .for_(kinds["TailscaleTailnet"])
            .named("tailscaletailnet")
            .complete(
                TailnetReconciler(
                    self.manager,
                    kinds["TailscaleTailnet"],
                    self.tailnet_clients,
                    namespace=namespace,
                    poll_interval=self.options.tailnet_poll_interval,
                    operator_id=cluster_id,
                )
            )
        )
        recorder = self.manager.event_recorder()
        self.authkeys = {
            k: controller_managed_by(self.manager)
            .for_(kinds[k])
            .named(f"{k.lower()}-authkeys")
            .watches(SECRETS, owner_of(k), informer=managed)
            .with_options(ControllerOptions(max_concurrent_reconciles=self.options.auth_key_workers))
            .complete(
                AuthKeyReconciler(
                    self.manager,
                    kinds[k],
                    self.pipeline,
                    self.tailnet_clients,
                    tailnets=kinds["TailscaleTailnet"],
                    recorder=recorder,
                )
            )
            for k in _OWNING_KINDS
        }
        tailnets_queue = self.tailnets.queue
        self.services = {
            k: controller_managed_by(self.manager)
            .for_(kinds[k])
            .named(f"{k.lower()}-services")
            .complete(
                ServiceReconciler(
                    self.manager,
                    kinds[k],
                    self.pipeline,
                    self.tailnet_clients,
                    tailnets=kinds["TailscaleTailnet"],
                    operator_id=cluster_id,
                    recorder=recorder,
                    poke=lambda tailnet: tailnets_queue.add(Request("", tailnet)),
                )
            )
            for k in _HOSTING_KINDS
        }
        status_kinds = [r for k, r in kinds.items() if k != "TailscaleTailnet"]
        self.status = add_status_controllers(self.manager, self.pipeline, status_kinds)
        self.proxygroups = add_proxygroup_controllers(
            self.manager, self.pipeline, [kinds[k] for k in _OWNING_KINDS]
        )
        self.route_access = add_route_access_controller(
            self.manager, self.pipeline, kinds["TailscaleRoutePolicy"]
        )
        provider = self.provider

        async def pipeline() -> None:
            await self.pipeline.run(provider.updates())

        async def serve_xds() -> None:
            async with anyio.create_task_group() as tg:
                self.xds_port = await tg.start(self.ads.serve, *self._xds)
                log.info("serving xDS", address=f"{self._xds[0]}:{self.xds_port}")

        async def serve_admin() -> None:
            async with anyio.create_task_group() as tg:
                self.admin_port = await tg.start(self.admin.serve, *self._admin)

        async def serve_extension(address: tuple[str, int]) -> None:
            async with anyio.create_task_group() as tg:
                self.extension_port = await tg.start(self.extension.serve, *address)
                log.info("serving the extension", address=f"{address[0]}:{self.extension_port}")

        async def statuses() -> None:
            await enqueue_changed(self.pipeline, self.status)

        async def groups() -> None:
            await enqueue_changed_groups(self.pipeline, self.proxygroups)

        async def services() -> None:
            await enqueue_changed_services(self.pipeline, self.services)

        async def route_access() -> None:
            await enqueue_changed_route_access(self.pipeline, self.route_access)

        async def reports() -> None:
            await self._report_xds()

        for fn in (pipeline, serve_xds, serve_admin, reports):
            self.manager.add(fn, need_leader_election=False)
        if self._extension is not None:
            self.manager.add(functools.partial(serve_extension, self._extension), need_leader_election=False)
        for fn in (statuses, groups, services, route_access):
            self.manager.add(fn, need_leader_election=True)
        self.manager.add_readyz_check("pipeline", lambda: self.pipeline.latest.version > 0)

    async def _cluster_id(self) -> str:
        """:attr:`OperatorOptions.cluster_id`, else the ``kube-system`` namespace's UID."""
        if self.options.cluster_id:
            return self.options.cluster_id
        try:
            ns = await self.client.get(_NAMESPACES, "kube-system")
        except KubeError as e:
            log.error("cannot read namespace kube-system for the cluster id: give --cluster-id", error=str(e))
            raise
        uid = str((ns.get("metadata") or {}).get("uid") or "")
        log.info("cluster id from the kube-system namespace", cluster_id=uid)
        return uid

    # every replica's Envoys ------------------------------------------------------------------

    def _remote_report(self, cm: RawObject, *, gone: bool) -> None:
        """Another replica's report of its Envoys, into this replica's judgement."""
        md = cm.get("metadata") or {}
        replica = (md.get("labels") or {}).get(XDS_REPORT_LABEL)
        if not replica or replica == self.options.identity or md.get("namespace") != self.options.namespace:
            return
        if gone:
            self.pipeline.set_remote(replica, None)
            return
        try:
            nodes = read_report(orjson.loads((cm.get("data") or {}).get(XDS_REPORT_KEY) or "{}"))
        except (ValueError, TypeError) as e:
            log.warning("unreadable xDS report", replica=replica, error=str(e))
            return
        self.pipeline.set_remote(replica, nodes)

    async def _report_xds(self) -> None:
        """Publish this replica's Envoys (per node cluster, against the snapshot content) in a
        ConfigMap the other replicas read, at most once a second and only when it changes:
        every replica serves xDS, so each sees only the Envoys connected to it."""
        name = report_name(self.options.identity)
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.options.namespace,
            "labels": {"app.kubernetes.io/managed-by": "tsgw", XDS_REPORT_LABEL: self.options.identity},
        }
        if self.options.pod_uid:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.options.identity,
                    "uid": self.options.pod_uid,
                }
            ]
        last = ""
        async for _ in self.pipeline.latest.watch():
            text = orjson.dumps(self.pipeline.local_report(), option=orjson.OPT_SORT_KEYS).decode()
            if text != last:
                try:
                    await self.client.apply(
                        CONFIGMAPS, {"metadata": meta, "data": {XDS_REPORT_KEY: text}}, field_manager="tsgw"
                    )
                    last = text
                except KubeError as e:
                    log.warning("xDS report not written; will retry", error=str(e))
            await anyio.sleep(1.0)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Set up and run until cancelled (or the Lease is lost: LeaderElectionLost)."""
        if self.provider is None:
            await self.setup()
        log.info(
            "operator starting",
            namespace=self.options.namespace,
            identity=self.options.identity,
            kinds=[k.kind for k in api.KINDS],
        )
        task_status.started()
        await self.manager.run()
