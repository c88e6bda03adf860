"""The hosted-API fake with the tailnet in a box behind it: one tailnet, one state.

:class:`BoxedFake` is :class:`tests.fake_tailscale.FakeTailscale` (OAuth, scopes, tag
ownership, the call log, injected failures: all unchanged) whose control-plane state lives in
the box (``tsgw-testcontrol``, :class:`~tests.support.tailnet_box.BoxAdmin`):

* auth keys the fake mints are made known to the box with the same id, secret, tags and
  reusability, so a real tailscaled that joins with one gets its tags and consumes it; deleting
  a key through the API revokes it in the box;
* ``vip-services`` are the box's services (VIPs allocated by the box, kept on update);
* devices are the box's nodes: real tailscaled that joined, listed, read, retagged
  (``POST /device/{id}/tags``: the node's peers and capabilities follow) and deleted (which
  logs the node out) through the API;
* the policy file (``POST /tailnet/-/acl``) sets the box's ``tagOwners`` and
  ``autoApprovers.services`` as well as the fake's own tag ownership.

The seam is the box's admin API and nothing else (``tests/tailnet/README.md``). The fake's
own ``register_device`` (devices without a tailscaled) is not used with a box.

:func:`boxed_tailnet` starts the box and this fake together (the pytest fixture
``tailnet_box`` and ``just tailnet up`` use it) and yields a :class:`BoxedTailnet`: what a
test needs to drive the tailnet through the documented API with :class:`TailscaleClient`,
plus the box for starting tailscaled nodes.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.from_thread
import httpx

from tests.fake_tailscale import serve
from tests.fake_tailscale._app import FakeTailscale, Token, _err, _Reply
from tests.support.netns import Namespace
from tests.support.tailnet_box import DEFAULT_TAGS, AdminError, BoxAdmin, TailnetBox
from tsgw.tailscale import APIKey, ClientOptions, OAuthClientCredentials, TailscaleClient

__all__ = ["OPERATOR_TAG", "BoxedFake", "BoxedTailnet", "boxed_tailnet", "default_policy"]

T = TypeVar("T")

OPERATOR_TAG = "tag:k8s-operator"
"""The tag of the OAuth client :func:`boxed_tailnet` makes, as tsgw's is in a real tailnet."""


def default_policy(tags: tuple[str, ...] = DEFAULT_TAGS) -> dict[str, Any]:
    """The policy :func:`boxed_tailnet` starts with: the operator's tag owns every box tag
    (as Tailscale's operator install asks), no autoApprovers (tests set them through the API)."""
    owners: dict[str, list[str]] = {OPERATOR_TAG: []}
    owners.update({t: [OPERATOR_TAG] for t in tags})
    return {"tagOwners": owners, "autoApprovers": {"services": {}}}


@dataclass
class BoxedFake(FakeTailscale):
    """:class:`FakeTailscale` whose keys, services and devices are the box's."""

    box: BoxAdmin | None = None
    """The box's admin client; required."""
    owners: dict[str, str] = field(default_factory=dict)
    """The owner (login name) of each untagged node, by hostname: the box's testcontrol puts
    every node under one user, the API names each device's owner. Default
    ``user@tailnet.test``."""

    def _admin(self) -> BoxAdmin:
        if self.box is None:
            raise RuntimeError("BoxedFake needs box=BoxAdmin(...)")
        return self.box

    def _route(self, method: str, path: str, body: Any, token: Token) -> _Reply:
        m = re.fullmatch(r"/api/v2/tailnet/([^/]+)(/.*)", path)
        rest = m.group(2) if m and m.group(1) in ("-", self.tailnet) else None
        try:
            if rest == "/vip-services" and method == "GET":
                self._need(token, "services", method)
                return _Reply(200, {"vipServices": self._admin().list_services()})
            if rest is not None and (sm := re.fullmatch(r"/vip-services/([^/]+)", rest)) is not None:
                self._need(token, "services", method)
                return self._box_service(method, sm.group(1), body)
            if rest == "/devices" and method == "GET":
                self._need(token, "devices:core", method)
                return _Reply(200, {"devices": [_device(n, self.owners) for n in self._admin().nodes()]})
            if rest == "/users" and method == "GET":
                self._need(token, "users", method)
                return _Reply(
                    200, {"users": self._users([_device(n, self.owners) for n in self._admin().nodes()])}
                )
            if (tm := re.fullmatch(r"/api/v2/device/([^/]+)/tags", path)) is not None and method == "POST":
                self._need(token, "devices:core", method)
                tags = list((body or {}).get("tags") or [])
                self._check_tags(token, tags)
                self._admin().set_node_tags(tm.group(1), tags)
                return _Reply(200)
            if (dm := re.fullmatch(r"/api/v2/device/([^/]+)", path)) is not None and method in (
                "GET",
                "DELETE",
            ):
                self._need(token, "devices:core", method)
                if method == "GET":
                    return _Reply(200, _device(self._admin().node(dm.group(1)), self.owners))
                self._admin().delete_node(dm.group(1))
                return _Reply(200)
        except AdminError as e:
            raise _err(e.status, e.message) from None
        reply = super()._route(method, path, body, token)
        km = re.fullmatch(r"/keys/([^/]+)", rest or "")
        if km is not None and method == "DELETE" and reply.status == 200:
            self._admin().revoke_key(km.group(1))
        return reply

    def _policy_set(self, policy: dict[str, Any]) -> None:
        auto = (policy.get("autoApprovers") or {}).get("services") or {}
        try:
            self._admin().put_policy(policy.get("tagOwners") or {}, auto)
        except AdminError as e:
            raise _err(e.status, e.message) from None

    def _create_key(self, body: Any, token: Token) -> _Reply:
        reply = super()._create_key(body, token)
        key = reply.body
        self._admin().add_key(
            key_id=key["id"],
            key=key["key"],
            tags=tuple(key["capabilities"]["devices"]["create"]["tags"]),
            reusable=key["capabilities"]["devices"]["create"]["reusable"],
            expires=key["expires"],
        )
        return reply

    def _box_service(self, method: str, name: str, body: Any) -> _Reply:
        admin = self._admin()
        if method == "GET":
            return _Reply(200, admin.get_service(name))
        if method == "DELETE":
            admin.delete_service(name)
            return _Reply(200)
        if method != "PUT":
            raise _err(405, "method not allowed")
        if not isinstance(body, dict) or body.get("name", name) != name:
            raise _err(400, "service name in body does not match the path")
        ports = list(body.get("ports") or [])
        if not ports:
            raise _err(400, "ports must be tcp:<port> or do-not-validate")
        svc = admin.put_service(
            name,
            ports,
            tags=list(body.get("tags") or []),
            comment=str(body.get("comment", "")),
            annotations=dict(body.get("annotations") or {}),
            addrs=list(body.get("addrs") or []),
        )
        return _Reply(200, svc)


def _device(n: dict[str, Any], owners: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A box node in the API's device shape (an untagged node's owner from ``owners``)."""
    return {
        "id": n["id"],
        "nodeId": n["nodeId"],
        "name": str(n["name"]).rstrip("."),
        "hostname": n["hostname"],
        "addresses": n["addresses"],
        "tags": n["tags"],
        "user": "tagged-devices" if n["tags"] else (owners or {}).get(n["hostname"], "user@tailnet.test"),
        "authorized": True,
        "keyExpiryDisabled": n["keyExpiry"] is None,
        "expires": n["keyExpiry"] or "0001-01-01T00:00:00Z",
        "lastSeen": n["lastSeen"],
        "connectedToControl": n["online"],
        "nodeKey": n["nodeKey"],
        "os": "linux",
        "clientVersion": "1.102.3",
        "isEphemeral": False,
        "isExternal": False,
        "blocksIncomingConnections": False,
        "updateAvailable": False,
    }


@dataclass
class BoxedTailnet:
    """One tailnet in a box: the box (for tailscaled nodes) and the hosted-API fake bound to it
    (for everything tsgw does through the API). Made by :func:`boxed_tailnet`."""

    box: TailnetBox
    fake: BoxedFake
    api_url: str
    """The fake's base URL (``ClientOptions.base_url``), on the host's loopback."""
    oauth_client_id: str
    oauth_client_secret: str = field(repr=False)
    """An OAuth client with scopes ``auth_keys``, ``devices:core``, ``services`` and tag
    ``tag:k8s-operator``: tsgw's own credential."""
    api_key: str = field(repr=False)
    """A user's API access token (scope ``all``): for what tsgw does not do itself (the policy
    file, untagged keys)."""
    portal: anyio.from_thread.BlockingPortal
    ts: TailscaleClient
    """A client with the OAuth credential on :attr:`portal`'s loop, for synchronous tests
    (``tn.call(tn.ts.create_auth_key, ...)``); async tests make their own with :meth:`client`."""
    user_ts: TailscaleClient
    """The same with :attr:`api_key` (e.g. untagged auth keys, which OAuth clients cannot mint)."""
    api_url_inside: str = ""
    """The fake's base URL as the box's namespace (and a test bed's pods) reach it; the same as
    :attr:`api_url` unless :func:`boxed_tailnet` served it there (``api_in_namespace``)."""

    def credentials(self) -> OAuthClientCredentials:
        return OAuthClientCredentials(self.oauth_client_id, self.oauth_client_secret)

    def client(self, *, as_user: bool = False) -> TailscaleClient:
        """A fresh :class:`TailscaleClient` against the fake (OAuth; ``as_user``: the API key)."""
        cred = APIKey(self.api_key) if as_user else self.credentials()
        return TailscaleClient(cred, ClientOptions(base_url=self.api_url))

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run one async client call from synchronous code, on :attr:`portal`'s loop."""
        return self.portal.call(fn, *args)

    def policy(self) -> dict[str, Any]:
        """``GET /api/v2/tailnet/-/acl`` (tsgw's client has no policy call: the operator never
        edits the policy)."""
        return dict(self._policy_request("GET"))

    def set_policy(
        self,
        *,
        tag_owners: Mapping[str, list[str]] | None = None,
        services: Mapping[str, list[str]] | None = None,
        groups: Mapping[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v2/tailnet/-/acl`` with the current policy, ``tagOwners``,
        ``autoApprovers.services`` and/or ``groups`` replaced, sending the ETag read back as
        ``If-Match``, as an admin's GitOps job would."""
        with httpx.Client(base_url=self.api_url, auth=(self.api_key, ""), timeout=10) as http:
            r = http.get("/api/v2/tailnet/-/acl")
            r.raise_for_status()
            doc = r.json()
            if tag_owners is not None:
                doc["tagOwners"] = dict(tag_owners)
            if services is not None:
                doc.setdefault("autoApprovers", {})["services"] = dict(services)
            if groups is not None:
                doc["groups"] = dict(groups)
            w = http.post("/api/v2/tailnet/-/acl", json=doc, headers={"If-Match": r.headers["ETag"]})
            w.raise_for_status()
            return dict(w.json())

    def _policy_request(self, method: str) -> Any:
        r = httpx.request(method, f"{self.api_url}/api/v2/tailnet/-/acl", auth=(self.api_key, ""), timeout=10)
        r.raise_for_status()
        return r.json()


@contextlib.contextmanager
def boxed_tailnet(
    workdir: Path,
    ns: Namespace | None = None,
    address: str | None = None,
    *,
    api_in_namespace: bool = False,
    tags: tuple[str, ...] = DEFAULT_TAGS,
) -> Iterator[BoxedTailnet]:
    """Start the box (in ``ns`` on ``address``, or a namespace of its own; nodes may request
    ``tags``) and the hosted-API fake bound to it, with :func:`default_policy` set through the
    fake; stop both on exit. The fake listens on the host's loopback; with ``api_in_namespace``
    it listens inside the box's namespace on the box's address instead (where the test bed's
    pods reach it: :attr:`BoxedTailnet.api_url_inside`), forwarded to a loopback port for the
    test process (:attr:`BoxedTailnet.api_url`)."""
    box = TailnetBox(workdir, ns, address, tags=tags)
    try:
        fake = BoxedFake(box=box.admin)
        fake.set_policy(default_policy(tags))
        cid, secret = fake.add_oauth_client(tags=(OPERATOR_TAG,))
        api_key = fake.add_api_key()
        sock = None
        if api_in_namespace:
            with box.ns.entered():
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((box.address, 0))
                sock.listen(128)
        with (
            serve(fake, sock) as inside,
            anyio.from_thread.start_blocking_portal() as portal,
        ):
            url = inside
            if sock is not None:
                url = f"http://127.0.0.1:{box.ns.forward(sock.getsockname()[1], host=box.address)}"
            opts = ClientOptions(base_url=url)
            ts = TailscaleClient(OAuthClientCredentials(cid, secret), opts)
            user_ts = TailscaleClient(APIKey(api_key), opts)
            try:
                yield BoxedTailnet(box, fake, url, cid, secret, api_key, portal, ts, user_ts, inside)
            finally:
                portal.call(ts.aclose)
                portal.call(user_ts.aclose)
    finally:
        box.close()
