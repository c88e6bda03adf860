"""The API client: any resource as raw JSON, over kubernetes-asyncio's configuration and session.

kubernetes-asyncio does the parts that are hard to get right (kubeconfig and in-cluster loading,
exec plugins, TLS); its typed models are ~30× slower to build than ``orjson``
dicts (controllers.md §2.2), so every request here goes through the ApiClient's aiohttp session
with raw JSON. Watches are raw streams read line by line.

Credentials are refreshed as client-go's: a token from a kubeconfig exec plugin (cloud token
helpers) is fetched again once its ``expirationTimestamp`` passes, and on a 401 the plugin is run
again and the request retried once (the token may have been revoked or rotated early); the
in-cluster service-account token is re-read from its file every minute (kubernetes-asyncio's hook)
and on a 401. The kubeconfig cluster's ``proxy-url`` and ``tls-server-name`` apply to every
request and watch.

Failures map onto one tree (:mod:`tsgw.kube._errors`). A 429, and a 5xx that carries a
Retry-After header, are retried after that delay (up to :attr:`ClientOptions.max_retries` times),
as client-go's ``checkWait``. A paginated LIST whose continue token expired (410) is read again
whole at the requested resourceVersion, as client-go's pager with ``FullListIfExpired``.
Client-side rate limiting is off by default, as in controller-runtime ≥ 0.21: API priority and
fairness protects the server.
"""

from __future__ import annotations

import datetime
import email.utils
import io
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import aiohttp
import anyio
import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config import incluster_config as k8s_incluster

from tsgw.kube._errors import (
    Gone,
    NotFound,
    ServerError,
    TooManyRequests,
    TransportError,
    Unauthorized,
    error_from_response,
    error_from_status,
)
from tsgw.kube._ratelimit import TokenBucket
from tsgw.kube._resources import RawObject, Resource

__all__ = ["Client", "ClientOptions", "ObjectList", "WatchEvent", "WatchStream"]

_LARGE_BODY = 1024 * 1024
"""Bodies above this (bytes) are streamed: aiohttp's own threshold for its warning."""

log = structlog.get_logger("tsgw.kube.client")

PatchType = Literal["merge", "json", "strategic", "apply"]
_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
_WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class ClientOptions:
    """Options for :class:`Client`."""

    field_manager: str = "tsgw"
    """Field manager for server-side apply and every write. Defaults to ``"tsgw"``."""
    qps: float | None = None
    """Client-side request rate limit; ``None`` (the default) disables it and relies on APF."""
    burst: int = 10
    """Token-bucket burst when :attr:`qps` is set. Defaults to 10."""
    request_timeout: float = 60.0
    """Total timeout of a non-watch request, in seconds; LISTs time out at 60 s server-side.
    Defaults to 60."""
    max_retries: int = 10
    """How many times a 429, or a 5xx with a Retry-After header, is retried after that delay
    (client-go's ``maxRetries``). Defaults to 10."""
    connection_pool_size: int = 200
    """aiohttp connection limit; every open watch pins one connection. Defaults to 200."""


@dataclass(frozen=True, slots=True)
class ObjectList:
    """A LIST result: every item (all pages) and the list's resourceVersion."""

    items: list[RawObject]
    resource_version: str
    paginated: bool = False


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: RawObject


class Client:
    """An async client for every resource; use ``async with`` or call :meth:`aclose`.

    Build it with :meth:`from_kubeconfig`, :meth:`from_environment` (in-cluster, then
    kubeconfig), or around an existing kubernetes-asyncio ``ApiClient``.
    """

    def __init__(self, api_client: Any, options: ClientOptions | None = None) -> None:
        self.options = options or ClientOptions()
        self._api = api_client
        self._host = str(api_client.configuration.host).rstrip("/")
        self._bucket = TokenBucket(self.options.qps, self.options.burst) if self.options.qps else None
        self._discovered: dict[tuple[str, str], Resource] = {}
        self._credentials: _Credentials | None = None
        self.requests: Counter[tuple[str, int]] = Counter()
        """Requests made, by (verb, status code); status 0 is a transport failure."""

    @classmethod
    async def from_kubeconfig(
        cls, path: str | None = None, context: str | None = None, options: ClientOptions | None = None
    ) -> Client:
        cfg = k8s_client.Configuration()
        loader = await k8s_config.load_kube_config(
            config_file=path, context=context, client_configuration=cfg, persist_config=False
        )
        client = cls._build(cfg, options)
        client._credentials = _Credentials.for_kubeconfig(loader, cfg)
        return client

    @classmethod
    async def from_environment(cls, options: ClientOptions | None = None) -> Client:
        """In-cluster service account if present, otherwise ``$KUBECONFIG`` / ``~/.kube/config``."""
        cfg = k8s_client.Configuration()
        incluster = k8s_incluster.InClusterConfigLoader(
            token_filename=k8s_incluster.SERVICE_TOKEN_FILENAME,
            cert_filename=k8s_incluster.SERVICE_CERT_FILENAME,
        )
        try:
            incluster.load_and_set(cfg)
        except k8s_config.ConfigException:
            loader = await k8s_config.load_kube_config(client_configuration=cfg, persist_config=False)
            client = cls._build(cfg, options)
            client._credentials = _Credentials.for_kubeconfig(loader, cfg)
            return client
        client = cls._build(cfg, options)
        client._credentials = _Credentials(cfg, incluster=incluster)
        return client

    @classmethod
    def _build(cls, cfg: Any, options: ClientOptions | None) -> Client:
        options = options or ClientOptions()
        cfg.connection_pool_maxsize = options.connection_pool_size
        return cls(k8s_client.ApiClient(configuration=cfg), options)

    async def aclose(self) -> None:
        await self._api.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def host(self) -> str:
        return self._host

    def writes(self) -> int:
        """How many write requests (POST/PUT/PATCH/DELETE) were sent."""
        return sum(n for (verb, _), n in self.requests.items() if verb in _WRITE_VERBS)

    # -- transport ---------------------------------------------------------------------------

    def _pool(self) -> aiohttp.ClientSession:
        # kubernetes-asyncio's own session: its TLS context, proxy settings and read buffer.
        session: aiohttp.ClientSession = self._api.rest_client.pool_manager
        return session

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        if self._credentials is not None:
            await self._credentials.refresh_if_expired()
        headers = {"Accept": "application/json", "User-Agent": "tsgw-kube"}
        if content_type:
            headers["Content-Type"] = content_type
        await self._api.update_params_for_auth(headers, [], ["BearerToken"])
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        http_timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request; returns an open response with a 2xx status, or raises."""
        data = orjson.dumps(body) if body is not None else None
        if body is not None and content_type is None:
            content_type = "application/json"
        attempt = 0
        reauthenticated = False
        while True:
            if self._bucket is not None:
                await self._bucket.acquire()
            headers = await self._headers(content_type)
            rest = self._api.rest_client
            extra: dict[str, Any] = {}
            if rest.proxy:
                extra["proxy"] = rest.proxy
                if rest.proxy_headers:
                    extra["proxy_headers"] = rest.proxy_headers
            if rest.server_hostname:
                extra["server_hostname"] = rest.server_hostname
            try:
                resp = await self._pool().request(
                    method,
                    self._host + path,
                    params=params,
                    # aiohttp writes a large bytes body in one go on the event loop (and warns):
                    # a file-like one is streamed in chunks. A fresh one per attempt.
                    data=io.BytesIO(data) if data is not None and len(data) > _LARGE_BODY else data,
                    headers=headers,
                    timeout=http_timeout or aiohttp.ClientTimeout(total=self.options.request_timeout),
                    **extra,
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.requests[(method, 0)] += 1
                raise TransportError(f"{method} {path}: {exc!r}") from exc
            self.requests[(method, resp.status)] += 1
            if resp.status < 300:
                return resp
            content = await resp.read()
            resp.release()
            err = error_from_response(resp.status, content, resp.headers)
            if isinstance(err, Unauthorized) and self._credentials is not None and not reauthenticated:
                reauthenticated = True
                if await self._credentials.refresh_after_401(headers.get("authorization")):
                    log.info("credentials refused; refreshed them, retrying", path=path)
                    continue
            retryable = isinstance(err, TooManyRequests) or (
                isinstance(err, ServerError) and err.retry_after is not None
            )
            if retryable and attempt < self.options.max_retries:
                attempt += 1
                wait = err.retry_after if err.retry_after is not None else 1.0
                log.debug(
                    "API server asked to retry",
                    path=path,
                    status=resp.status,
                    retry_after=wait,
                    attempt=attempt,
                )
                await anyio.sleep(min(wait, 60.0))
                continue
            raise err

    async def _json(self, method: str, path: str, **kwargs: Any) -> RawObject:
        resp = await self._send(method, path, **kwargs)
        try:
            content = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        finally:
            resp.release()
        result: RawObject = orjson.loads(content) if content else {}
        return result

    # -- reads -------------------------------------------------------------------------------

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> RawObject:
        return await self._json("GET", resource.path(namespace, name))

    async def get_or_none(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> RawObject | None:
        try:
            return await self.get(resource, name, namespace)
        except NotFound:
            return None

    async def list_page(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> RawObject:
        """One LIST request; the raw List object (``items``, ``metadata.continue``)."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        if continue_:
            params["continue"] = continue_
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if resource_version_match:
            params["resourceVersionMatch"] = resource_version_match
        return await self._json("GET", resource.path(namespace), params=params)

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = 500,
        resource_version: str | None = None,
    ) -> ObjectList:
        """Every item, following ``continue`` tokens; the RV is that of the consistent snapshot."""
        items: list[RawObject] = []
        cont: str | None = None
        pages = 0
        rv = ""
        while True:
            try:
                page = await self.list_page(
                    resource,
                    namespace,
                    label_selector=label_selector,
                    field_selector=field_selector,
                    limit=limit,
                    continue_=cont,
                    resource_version=resource_version if cont is None else None,
                )
            except Gone:
                if cont is None:
                    raise
                # The continue token expired between pages: one full list at the requested RV.
                log.info("continue token expired; listing in full", resource=str(resource))
                items, cont, rv = [], None, ""
                page = await self.list_page(
                    resource,
                    namespace,
                    label_selector=label_selector,
                    field_selector=field_selector,
                    resource_version=resource_version,
                )
            pages += 1
            meta = page.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion") or "")
            page_items = page.get("items") or []
            kind = resource.kind
            for item in page_items:
                # List items carry no apiVersion/kind; put them back so objects are self-describing.
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", kind)
            items.extend(page_items)
            cont = meta.get("continue") or None
            if not cont:
                return ObjectList(items, str(meta.get("resourceVersion") or rv), paginated=pages > 1)

    def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
        send_initial_events: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        idle_timeout: float | None = 90.0,
    ) -> WatchStream:
        """A raw watch stream: ``async with client.watch(...) as events: async for ev in events``.

        ``idle_timeout`` is the inactivity watchdog: with bookmarks every ~60 s, silence longer
        than that means a dead connection (aiohttp has no HTTP/2 pings), and the stream ends with
        :class:`TransportError`.
        """
        params: dict[str, str] = {"watch": "true"}
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        if send_initial_events:
            params["sendInitialEvents"] = "true"
            params["resourceVersionMatch"] = "NotOlderThan"
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        return WatchStream(self, resource.path(namespace), params, idle_timeout)

    async def discover(self, api_version: str, kind: str) -> Resource:
        """The :class:`Resource` serving ``kind`` in ``api_version`` (from API discovery; cached)."""
        key = (api_version, kind)
        if key not in self._discovered:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            doc = await self._json("GET", path)
            for r in doc.get("resources") or []:
                if r.get("kind") == kind and "/" not in r.get("name", ""):
                    self._discovered[key] = Resource(api_version, kind, r["name"], bool(r.get("namespaced")))
                    break
            else:
                raise NotFound(404, f"no resource for {kind} in {api_version}", reason="NotFound")
        return self._discovered[key]

    async def server_clock(self) -> tuple[float, float]:
        """The API server's clock against this process's: ``(server, local)`` POSIX times, the
        server's from the ``Date`` header of a ``GET /version`` (RFC 9110: one-second
        resolution) and the local one midway through that request. Their difference is the
        clock skew, give or take the request's round trip and a second. TransportError when no
        answer carries a Date."""
        before = datetime.datetime.now(datetime.UTC).timestamp()
        resp = await self._send("GET", "/version")
        after = datetime.datetime.now(datetime.UTC).timestamp()
        try:
            header = resp.headers.get("Date", "")
        finally:
            resp.release()
        try:
            server = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError) as exc:
            raise TransportError(f"GET /version: no readable Date header ({header!r})") from exc
        return server, (before + after) / 2

    # -- writes ------------------------------------------------------------------------------

    def _write_params(self, field_manager: str | None, dry_run: bool = False) -> dict[str, str]:
        params = {"fieldManager": field_manager or self.options.field_manager}
        if dry_run:
            params["dryRun"] = "All"
        return params

    async def create(
        self, resource: Resource, obj: RawObject, *, field_manager: str | None = None
    ) -> RawObject:
        ns = (obj.get("metadata") or {}).get("namespace")
        return await self._json("POST", resource.path(ns), body=obj, params=self._write_params(field_manager))

    async def replace(
        self,
        resource: Resource,
        obj: RawObject,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> RawObject:
        """PUT the whole object; optimistic on ``metadata.resourceVersion`` (409 if stale)."""
        meta = obj["metadata"]
        return await self._json(
            "PUT",
            resource.path(meta.get("namespace"), meta["name"], subresource),
            body=obj,
            params=self._write_params(field_manager),
        )

    async def replace_status(self, resource: Resource, obj: RawObject) -> RawObject:
        """PUT the status subresource; only ``.status`` changes, ``generation`` does not."""
        return await self.replace(resource, obj, subresource="status")

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> RawObject:
        """PATCH with a merge, JSON, strategic-merge or apply body."""
        params = self._write_params(field_manager)
        if force:
            params["force"] = "true"
        return await self._json(
            "PATCH",
            resource.path(namespace, name, subresource),
            body=patch,
            params=params,
            content_type=_CONTENT_TYPES[patch_type],
        )

    async def apply(
        self,
        resource: Resource,
        obj: RawObject,
        *,
        field_manager: str | None = None,
        force: bool = True,
        subresource: str | None = None,
    ) -> RawObject:
        """Server-side apply of a partial object (forced by default: controllers own their fields)."""
        meta = obj["metadata"]
        body = {"apiVersion": resource.api_version, "kind": resource.kind, **obj}
        return await self.patch(
            resource,
            meta["name"],
            body,
            namespace=meta.get("namespace"),
            patch_type="apply",
            subresource=subresource,
            field_manager=field_manager,
            force=force,
        )

    async def apply_status(
        self, resource: Resource, obj: RawObject, *, field_manager: str | None = None
    ) -> RawObject:
        return await self.apply(resource, obj, field_manager=field_manager, subresource="status")

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: Literal["Background", "Foreground", "Orphan"] | None = None,
    ) -> RawObject:
        """DELETE, optionally only if the object still has ``uid``/``resource_version``."""
        body: RawObject = {"apiVersion": "v1", "kind": "DeleteOptions"}
        pre = {}
        if uid:
            pre["uid"] = uid
        if resource_version:
            pre["resourceVersion"] = resource_version
        if pre:
            body["preconditions"] = pre
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        return await self._json("DELETE", resource.path(namespace, name), body=body)


class _Credentials:
    """Refreshes the bearer token of a kubeconfig exec plugin or of the in-cluster token file."""

    def __init__(self, cfg: Any, loader: Any = None, incluster: Any = None) -> None:
        self._cfg = cfg
        self._loader = loader
        self._incluster = incluster
        self._lock = anyio.Lock()

    @classmethod
    def for_kubeconfig(cls, loader: Any, cfg: Any) -> _Credentials | None:
        user = getattr(loader, "_user", None)
        if user is None or "exec" not in user:
            return None  # a static token or client certificate: nothing to refresh
        return cls(cfg, loader)

    def _token(self) -> str | None:
        token: str | None = self._cfg.api_key.get("BearerToken")
        return token

    async def refresh_if_expired(self) -> None:
        """Run the exec plugin again once its credential's ``expirationTimestamp`` passed."""
        expiry = getattr(self._loader, "exec_plugin_expiry", None)
        if expiry is None or expiry > datetime.datetime.now(datetime.UTC):
            return
        async with self._lock:
            if getattr(self._loader, "exec_plugin_expiry", None) is expiry:
                await self._run_plugin()

    async def refresh_after_401(self, refused: str | None) -> bool:
        """Fetch a new token after ``refused`` was refused; whether there is one to retry with."""
        async with self._lock:
            if self._token() != refused:
                return True  # another request refreshed it meanwhile
            if self._loader is not None:
                await self._run_plugin()
            elif self._incluster is not None:
                # The kubelet rotates the projected token; kubernetes-asyncio's hook re-reads the
                # file once a minute: read it now.
                try:
                    self._incluster._read_token_file()
                except (OSError, k8s_config.ConfigException) as exc:
                    log.warning("could not re-read the service-account token", error=str(exc))
                    return False
                self._cfg.api_key["BearerToken"] = self._incluster.token
            return self._token() not in (None, refused)

    async def _run_plugin(self) -> None:
        loader = self._loader
        if hasattr(loader, "exec_plugin_expiry"):
            del loader.exec_plugin_expiry  # kubernetes-asyncio's check keeps a valid token
        try:
            await loader.load_from_exec_plugin()
        except Exception as exc:  # the plugin failed: keep the old token, report the request's error
            log.warning("exec credential plugin failed", error=str(exc))
            return
        if getattr(loader, "token", None):
            self._cfg.api_key["BearerToken"] = loader.token


class WatchStream:
    """An open watch; iterate for :class:`WatchEvent`; an ERROR event raises its :class:`APIError`."""

    def __init__(self, client: Client, path: str, params: dict[str, str], idle_timeout: float | None) -> None:
        self._client = client
        self._path = path
        self._params = params
        self._idle = idle_timeout
        self._resp: aiohttp.ClientResponse | None = None
        self._buf = bytearray()

    async def __aenter__(self) -> WatchStream:
        self._resp = await self._client._send(
            "GET",
            self._path,
            params=self._params,
            http_timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self._idle),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        resp, self._resp = self._resp, None
        if resp is None:
            return
        # An abandoned watch has an unread body, so the connection cannot be reused. Abort it:
        # a graceful TLS shutdown would outlive the stream (and can outlive the event loop).
        conn = resp.connection
        transport = conn.transport if conn is not None else None
        if transport is not None:
            transport.abort()
        resp.close()

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def _readline(self) -> bytes:
        """The next line, however long (b"" at the end of the stream).

        aiohttp's ``readline()`` refuses a line over twice its read buffer (4 MiB under
        kubernetes-asyncio) with ``LineTooLong``; JSON escapes ``<``, ``>`` and ``&`` six-fold,
        so a ConfigMap the API server accepts (1 MiB) can make a ~6 MB event. Lines are split
        here from whatever the connection delivers, with no limit of our own.
        """
        assert self._resp is not None, "use `async with`"
        buf = self._buf
        scanned = 0
        while True:
            end = buf.find(b"\n", scanned)
            if end >= 0:
                line = bytes(buf[: end + 1])
                del buf[: end + 1]  # O(1) amortized: bytearray drops a prefix by moving its start
                return line
            scanned = len(buf)
            chunk = await self._resp.content.readany()
            if not chunk:
                line = bytes(buf)
                buf.clear()
                return line
            buf += chunk

    async def __anext__(self) -> WatchEvent:
        try:
            line = await self._readline()
        except (TimeoutError, aiohttp.ClientError, HttpProcessingError, OSError) as exc:
            raise TransportError(f"watch {self._path}: {exc!r}") from exc
        if not line:
            raise StopAsyncIteration
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError as exc:  # a line cut short by a dropped connection
            raise TransportError(f"watch {self._path}: truncated event") from exc
        etype = ev.get("type")
        obj = ev.get("object") or {}
        if etype == "ERROR":
            raise error_from_status(int(obj.get("code") or 500), obj)
        return WatchEvent(etype, obj)
