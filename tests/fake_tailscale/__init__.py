"""A fake of Tailscale's hosted API v2, for what cannot run here (the hosted control plane).

Headscale is real in the tests; this fake stands in only for ``api.tailscale.com``. It is a
raw ASGI app (:class:`FakeTailscale`): tests drive it in process through
``httpx.ASGITransport``, or over real HTTP with :func:`serve`, which binds 127.0.0.1 only.

Modelled, with the documented request and response JSON (shared/reference/tailscale.md §2):

* ``POST /api/v2/oauth/token``: client-credentials grant, credentials in the form or HTTP
  Basic; ``scope`` and ``tags`` narrowing; RFC 6749 errors (``invalid_client`` 401,
  ``invalid_scope`` 400); tokens expire after ``token_lifetime`` seconds on the fake's clock
  and answer 401 afterwards; :meth:`FakeTailscale.revoke_tokens` revokes them early.
* Authentication with ``Authorization: Bearer`` or Basic (token as user name), OAuth tokens
  or user API keys; scopes ``auth_keys``, ``devices:core``, ``services``, ``all`` and their
  ``:read`` forms (403 "does not have enough permissions" when missing).
* Auth keys: ``POST/GET /tailnet/{t}/keys``, ``GET/DELETE /tailnet/{t}/keys/{id}``;
  ``capabilities.devices`` required; OAuth-minted keys must be tagged, and every tag must be
  in ``tagOwners`` and equal to or owned by one of the client's tags, else
  400 "requested tags [...] are invalid or not permitted"; description ≤ 50 characters;
  ``expirySeconds`` default 90 days; the secret ``key`` only in the create answer.
* Devices: ``GET /tailnet/{t}/devices``, ``GET/DELETE /device/{id}`` (stable ``nodeId`` or
  legacy numeric ``id``), ``POST /device/{id}/tags`` (same tag rules). Devices appear when a
  test calls :meth:`FakeTailscale.register_device` with a key, which consumes a single-use
  key and applies the key's tags, ``preauthorized`` and ``ephemeral``.
* Tailscale Services: ``GET /tailnet/{t}/vip-services``, ``GET/PUT/DELETE
  /tailnet/{t}/vip-services/svc:<name>``; control allocates one IPv4 and one IPv6 VIP on
  create; an update whose ``addrs`` differ from the current ones is refused with 400 (as
  users report); ports ``tcp:<n>[-<m>]`` or ``do-not-validate``.
* Policy file: ``GET/POST /tailnet/{t}/acl`` (scope ``policy_file``), JSON only: the body
  is the whole policy, its ``tagOwners`` replace the fake's :attr:`FakeTailscale.tag_owners`
  (``autoApprovers.services`` is checked for shape and kept); answers carry an ``ETag`` and a
  POST with a stale ``If-Match`` is refused with 412. Everything else in the file is stored,
  not enforced.
* Users: ``GET /tailnet/{t}/users`` (scope ``users:read``): :attr:`FakeTailscale.users` and
  every device's ``user``, with ``id``, ``loginName``, ``displayName``, ``role``, ``type``.
* ``{tailnet}`` is ``-`` or the fake's tailnet name, else 404. Errors are ``{"message": ...}``.
* :meth:`FakeTailscale.fail`: the next N matching requests answer a chosen status (429 with
  ``Retry-After``, 5xx) before authentication, as an API gateway would.
* :attr:`FakeTailscale.latency`: a request's time in transit each way (none by default), so
  two clients' reads and writes overlap as over a real network; requests are applied one at a
  time in arrival order, as the hosted API's last-writer-wins services are.
* :attr:`FakeTailscale.calls`: every request with its status, principal and JSON body (the
  token grant's form, which carries the secret, is not recorded).

Not modelled: the control protocol itself (tailscaled cannot join this fake; Headscale or
testcontrol serve that), keys of type ``client``/``federated``, workload identity
federation, key expiry at run time, ephemeral device clean-up, routes, ACL rules and grants, HuJSON
comments, ``/acl/validate`` and ``/acl/preview``, the ``ts-default`` If-Match, DNS,
settings, user management and the users listing's filters, device authorization and rename,
the ``fields=`` query, real rate limits
(Tailscale publishes none), host approval and VIP routing of Tailscale Services, and ETags.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ._app import Call, FakeTailscale

__all__ = ["Call", "FakeTailscale", "serve"]


@contextmanager
def serve(app: FakeTailscale, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve ``app`` over HTTP in a thread; yields its base URL. On 127.0.0.1 (an ephemeral
    port), or on ``sock``, a bound TCP socket (e.g. one made inside a network namespace, so
    pods of the test bed reach the fake at that namespace's address)."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    sockets = [sock] if sock is not None else None
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": sockets}, name="fake-tailscale", daemon=True
    )
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError("fake Tailscale API did not start")
        host, port = (sock or server.servers[0].sockets[0]).getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
