"""The hosted-API fake with the tailnet in a box behind it: one tailnet, one state.

:class:`BoxedFake` is :class:`tests.fake_tailscale.FakeTailscale` (OAuth, scopes, tag
ownership, the call log, injected failures: all unchanged) whose control-plane state lives in
the box (``tsgw-testcontrol``, :class:`~tests.support.tailnet_box.BoxAdmin`):

* auth keys the fake mints are made known to the box with the same id, secret, tags and
  reusability, so a real tailscaled that joins with one gets its tags and consumes it; deleting
  a key through the API revokes it in the box;
* ``vip-services`` are the box's services (VIPs allocated by the box, kept on update);
* devices are the box's nodes: real tailscaled that joined, listed, read and deleted (which
  logs the node out) through the API.

The seam is the box's admin API and nothing else (``tests/tailnet/README.md``). The fake's
own ``register_device`` (devices without a tailscaled) is not used with a box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.fake_tailscale._app import FakeTailscale, Token, _err, _Reply
from tests.support.tailnet_box import AdminError, BoxAdmin

__all__ = ["BoxedFake"]


@dataclass
class BoxedFake(FakeTailscale):
    """:class:`FakeTailscale` whose keys, services and devices are the box's."""

    box: BoxAdmin | None = None
    """The box's admin client; required."""

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
                return _Reply(200, {"devices": [_device(n) for n in self._admin().nodes()]})
            if (dm := re.fullmatch(r"/api/v2/device/([^/]+)", path)) is not None and method in (
                "GET",
                "DELETE",
            ):
                self._need(token, "devices:core", method)
                if method == "GET":
                    return _Reply(200, _device(self._admin().node(dm.group(1))))
                self._admin().delete_node(dm.group(1))
                return _Reply(200)
        except AdminError as e:
            raise _err(e.status, e.message) from None
        reply = super()._route(method, path, body, token)
        km = re.fullmatch(r"/keys/([^/]+)", rest or "")
        if km is not None and method == "DELETE" and reply.status == 200:
            self._admin().revoke_key(km.group(1))
        return reply

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


def _device(n: dict[str, Any]) -> dict[str, Any]:
    """A box node in the API's device shape."""
    return {
        "id": n["id"],
        "nodeId": n["nodeId"],
        "name": str(n["name"]).rstrip("."),
        "hostname": n["hostname"],
        "addresses": n["addresses"],
        "tags": n["tags"],
        "user": "tagged-devices" if n["tags"] else "user@tailnet.test",
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
