"""The fake's state and its raw ASGI application (see the package docstring for the model)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_TAG = re.compile(r"tag:[a-zA-Z][a-zA-Z0-9-]*")
_SVC = re.compile(r"svc:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"(tcp:\d{1,5}(-\d{1,5})?|do-not-validate)")


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


def _err(status: int, message: str) -> _Reply:
    return _Reply(status, {"message": message})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class OAuthClient:
    id: str
    secret: str
    scopes: frozenset[str]
    tags: tuple[str, ...]


@dataclass
class Token:
    value: str
    client: OAuthClient | None
    scopes: frozenset[str]
    tags: tuple[str, ...]
    expires_at: float  # on the fake's clock; inf for API keys


@dataclass
class Call:
    """One request the fake answered: what a test asserts on ("exactly one key per replica")."""

    method: str
    path: str
    status: int
    principal: str
    """``oauth:<client id>``, ``api-key``, or empty when unauthenticated."""
    body: Any = None
    """The decoded JSON request body (never the token grant's form, which holds a secret)."""


@dataclass
class _Failure:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    retry_after: str | None


@dataclass
class FakeTailscale:
    """Tailscale's hosted API v2 in memory, as a raw ASGI app (``await fake(scope, receive, send)``)."""

    tailnet: str = "example.com"
    tag_owners: dict[str, list[str]] = field(
        default_factory=lambda: {"tag:k8s-operator": [], "tag:k8s": ["tag:k8s-operator"]}
    )
    """The policy's ``tagOwners``: which tags may apply which."""
    policy: dict[str, Any] = field(default_factory=dict)
    """The policy file as last set (``POST /tailnet/{t}/acl``). Default empty: then the policy
    is ``{"tagOwners": tag_owners}``."""
    token_lifetime: int = 3600
    """``expires_in`` of minted OAuth tokens, seconds. Default 3600, as Tailscale."""
    clock: Callable[[], float] = time.monotonic
    latency: Callable[[str, str], tuple[float, float]] | None = None
    """The network between a client and the API: ``(method, path)`` → seconds the request
    spends in transit before the API acts on it, and seconds its answer spends coming back.
    Default none. Tests of concurrent writers use it to make reads and writes of two clients
    overlap as they do over a real network (the API applies requests in arrival order)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Users by login name (``GET /tailnet/{t}/users``: ``id``, ``displayName``,
    ``loginName``, ``role``, ``type``); a device's ``user`` not listed here is listed with its
    login as display name."""
    calls: list[Call] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    key_secrets: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _headers: dict[str, str] = field(default_factory=dict)
    """The headers of the request being routed (set under ``_lock``)."""

    # --- set-up helpers (what the admin console would do) -------------------------------
    def add_oauth_client(
        self, scopes: tuple[str, ...] = ("auth_keys", "devices:core", "services"), tags: tuple[str, ...] = ()
    ) -> tuple[str, str]:
        """Create an OAuth client; returns ``(client_id, client_secret)``."""
        cid = f"k{secrets.token_hex(5)}CNTRL"
        secret = f"tskey-client-{cid}-{secrets.token_hex(16)}"
        self.clients[cid] = OAuthClient(cid, secret, frozenset(scopes), tuple(tags or ("tag:k8s-operator",)))
        return cid, secret

    def add_api_key(self, scopes: tuple[str, ...] = ("all",)) -> str:
        """A user's API access token (user-owned: its keys need no tags)."""
        value = f"tskey-api-k{secrets.token_hex(5)}CNTRL-{secrets.token_hex(16)}"
        self.tokens[value] = Token(value, None, frozenset(scopes), (), float("inf"))
        return value

    def fail(
        self, method: str, path: str, status: int, *, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and the ``path`` regex with ``status``
        (and ``Retry-After: retry_after``), before authentication, as an API gateway would."""
        self._failures.append(_Failure(method, re.compile(path), status, times, retry_after))

    def set_policy(self, policy: dict[str, Any]) -> dict[str, Any]:
        """Replace the policy file (what an admin saving it in the console does); validated as
        ``POST /tailnet/{t}/acl`` validates it. Returns the stored policy."""
        with self._lock:
            return self._apply_policy(policy)

    def current_policy(self) -> dict[str, Any]:
        """The policy file the API serves: the one last set, or ``{"tagOwners": tag_owners}``."""
        return self.policy or {"tagOwners": {t: list(o) for t, o in self.tag_owners.items()}}

    def revoke_tokens(self) -> None:
        """Invalidate every OAuth access token (an admin revoked the client's tokens)."""
        for v in [v for v, t in self.tokens.items() if t.client is not None]:
            del self.tokens[v]

    def register_device(self, auth_key: str, hostname: str) -> dict[str, Any]:
        """A node joins with ``auth_key`` (what tailscaled does over the control protocol)."""
        with self._lock:
            kid = next((k for k, s in self.key_secrets.items() if s == auth_key), None)
            if kid is None or kid not in self.keys:
                raise ValueError("invalid auth key")
            key = self.keys[kid]
            create = key["capabilities"]["devices"]["create"]
            if key.get("invalid"):
                raise ValueError("auth key already used or revoked")
            n = next(self._seq)
            node_id = f"n{secrets.token_hex(5)}CNTRL"
            dev = {
                "addresses": [f"100.64.0.{n}", f"fd7a:115c:a1e0::{n:x}"],
                "id": str(1000 + n),
                "nodeId": node_id,
                "user": "tagged-devices" if create.get("tags") else "admin@example.com",
                "name": f"{hostname}.{self.tailnet.split('.')[0]}.ts.net",
                "hostname": hostname,
                "clientVersion": "1.102.3",
                "updateAvailable": False,
                "os": "linux",
                "created": _now(),
                "lastSeen": _now(),
                "keyExpiryDisabled": bool(create.get("tags")),
                "expires": "0001-01-01T00:00:00Z",
                "authorized": bool(create.get("preauthorized")),
                "isExternal": False,
                "machineKey": f"mkey:{secrets.token_hex(32)}",
                "nodeKey": f"nodekey:{secrets.token_hex(32)}",
                "blocksIncomingConnections": False,
                "tags": list(create.get("tags") or []),
                "connectedToControl": True,
                "isEphemeral": bool(create.get("ephemeral")),
            }
            self.devices[node_id] = dev
            if not create.get("reusable"):
                key["invalid"] = True
            return dev

    def count(self, method: str, path: str) -> int:
        """Calls with this method whose path matches the ``path`` regex (any status)."""
        p = re.compile(path)
        return sum(1 for c in self.calls if c.method == method and p.fullmatch(c.path))

    # --- ASGI --------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        path = unquote(scope["path"])
        principal = ""
        body: Any = None
        delay_in, delay_out = self.latency(method, path) if self.latency is not None else (0.0, 0.0)
        if delay_in > 0:
            await anyio.sleep(delay_in)
        try:
            with self._lock:
                self._inject(method, path)
                if path == "/api/v2/oauth/token" and method == "POST":
                    reply = self._token(raw.decode(), headers)
                else:
                    if raw and headers.get("content-type", "").startswith(
                        ("application/json", "application/hujson")
                    ):
                        try:
                            body = json.loads(raw)
                        except ValueError:
                            raise _err(400, "invalid JSON body") from None
                    token = self._authenticate(headers)
                    principal = f"oauth:{token.client.id}" if token.client else "api-key"
                    self._headers = headers
                    reply = self._route(method, path, body, token)
        except _Reply as r:
            reply = r
        with self._lock:
            self.calls.append(Call(method, path, reply.status, principal, body))
        if delay_out > 0:
            await anyio.sleep(delay_out)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        out_headers = [(b"content-type", b"application/json")] if reply.body is not None else []
        out_headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        out_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": payload})

    def _inject(self, method: str, path: str) -> None:
        for f in self._failures:
            if f.remaining > 0 and f.method == method and f.path.fullmatch(path):
                f.remaining -= 1
                hdrs = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
                msg = "rate limited" if f.status == 429 else "injected failure"
                raise _Reply(f.status, {"message": msg}, hdrs)

    # --- OAuth ---------------------------------------------------------------------------
    def _token(self, form_text: str, headers: dict[str, str]) -> _Reply:
        form = {k: v[0] for k, v in parse_qs(form_text).items()}
        cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if form.get("grant_type", "client_credentials") != "client_credentials":
            return _Reply(400, {"error": "unsupported_grant_type"})
        client = self.clients.get(cid)
        if client is None or not secrets.compare_digest(client.secret, secret):
            return _Reply(401, {"error": "invalid_client", "error_description": "invalid client credentials"})
        scopes = client.scopes
        if form.get("scope"):
            wanted = frozenset(form["scope"].split())
            if not all(self._scope_allows(client.scopes, s) for s in wanted):
                return _Reply(400, {"error": "invalid_scope", "error_description": "scope not granted"})
            scopes = wanted
        tags = client.tags
        if form.get("tags"):
            wanted_tags = tuple(t for t in form["tags"].split(",") if t)
            if not set(wanted_tags) <= set(client.tags):
                return _Reply(400, {"error": "invalid_request", "error_description": "tags not granted"})
            tags = wanted_tags
        value = f"tskey-oauthtok-{secrets.token_hex(20)}"
        self.tokens[value] = Token(value, client, scopes, tags, self.clock() + self.token_lifetime)
        return _Reply(
            200,
            {
                "access_token": value,
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "scope": " ".join(sorted(scopes)),
            },
        )

    @staticmethod
    def _scope_allows(granted: frozenset[str], needed: str) -> bool:
        base = needed.removesuffix(":read")
        if "all" in granted or base in granted:
            return True
        return needed.endswith(":read") and ("all:read" in granted or needed in granted)

    def _authenticate(self, headers: dict[str, str]) -> Token:
        auth = headers.get("authorization", "")
        value = ""
        if auth.startswith("Bearer "):
            value = auth[7:]
        elif auth.startswith("Basic "):
            value = base64.b64decode(auth[6:]).decode().partition(":")[0]
        token = self.tokens.get(value)
        if token is None:
            raise _err(401, "API token invalid")
        if self.clock() >= token.expires_at:
            raise _err(401, "API token expired")
        return token

    def _need(self, token: Token, scope: str, method: str) -> None:
        needed = f"{scope}:read" if method == "GET" else scope
        if not self._scope_allows(token.scopes, needed):
            raise _err(
                403, f"calling actor does not have enough permissions to perform this function ({needed})"
            )

    def _owns(self, owner_tags: tuple[str, ...], tag: str) -> bool:
        if tag in owner_tags:
            return True
        return any(o in owner_tags for o in self.tag_owners.get(tag, []))

    def _check_tags(self, token: Token, tags: list[str]) -> None:
        bad = [t for t in tags if not _TAG.fullmatch(t) or t not in self.tag_owners]
        if token.client is not None:
            bad += [t for t in tags if t not in bad and not self._owns(token.tags, t)]
        if bad:
            raise _err(400, f"requested tags [{' '.join(bad)}] are invalid or not permitted")

    # --- routes --------------------------------------------------------------------------
    def _route(self, method: str, path: str, body: Any, token: Token) -> _Reply:
        m = re.fullmatch(r"/api/v2/tailnet/([^/]+)(/.*)", path)
        if m:
            if m.group(1) not in ("-", self.tailnet):
                raise _err(404, "tailnet not found")
            rest = m.group(2)
            if rest == "/keys":
                self._need(token, "auth_keys", method)
                if method == "GET":
                    return _Reply(200, {"keys": [self._public_key(k) for k in self.keys.values()]})
                if method == "POST":
                    return self._create_key(body, token)
            if (km := re.fullmatch(r"/keys/([^/]+)", rest)) is not None:
                self._need(token, "auth_keys", method)
                key = self.keys.get(km.group(1))
                if key is None:
                    raise _err(404, "key not found")
                if method == "GET":
                    return _Reply(200, self._public_key(key))
                if method == "DELETE":
                    del self.keys[km.group(1)]
                    self.key_secrets.pop(km.group(1), None)
                    return _Reply(200)
            if rest == "/devices" and method == "GET":
                self._need(token, "devices:core", method)
                return _Reply(200, {"devices": list(self.devices.values())})
            if rest == "/users" and method == "GET":
                self._need(token, "users", method)
                return _Reply(200, {"users": self._users()})
            if rest == "/acl" and method in ("GET", "POST"):
                self._need(token, "policy_file", method)
                return self._acl(method, body)
            if rest == "/vip-services":
                self._need(token, "services", method)
                if method == "GET":
                    return _Reply(200, {"vipServices": list(self.services.values())})
            if (sm := re.fullmatch(r"/vip-services/([^/]+)", rest)) is not None:
                self._need(token, "services", method)
                return self._service(method, sm.group(1), body)
            raise _err(404 if method == "GET" else 405, "not found")
        if (dm := re.fullmatch(r"/api/v2/device/([^/]+)(/tags)?", path)) is not None:
            self._need(token, "devices:core", method)
            dev = self.devices.get(dm.group(1)) or next(
                (d for d in self.devices.values() if d["id"] == dm.group(1)), None
            )
            if dev is None:
                raise _err(404, "device not found")
            if dm.group(2) and method == "POST":
                tags = list((body or {}).get("tags") or [])
                self._check_tags(token, tags)
                dev["tags"] = tags
                return _Reply(200)
            if not dm.group(2) and method == "GET":
                return _Reply(200, dev)
            if not dm.group(2) and method == "DELETE":
                del self.devices[dev["nodeId"]]
                return _Reply(200)
        raise _err(404, "not found")

    def _users(self, devices: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """:attr:`users`, and every owner of a device (``devices``: default the fake's own)."""
        out = dict(self.users)
        for d in self.devices.values() if devices is None else devices:
            login = str(d.get("user") or "")
            if login and login != "tagged-devices" and login not in out:
                out[login] = {"id": f"u{len(out) + 1}", "loginName": login, "displayName": login}
        for login, u in out.items():
            u.setdefault("loginName", login)
            u.setdefault("role", "member")
            u.setdefault("type", "member")
        return [out[k] for k in sorted(out)]

    # --- the policy file -------------------------------------------------------------------
    def _etag(self) -> str:
        doc = json.dumps(self.current_policy(), sort_keys=True).encode()
        return f'"{hashlib.sha256(doc).hexdigest()[:16]}"'

    def _acl(self, method: str, body: Any) -> _Reply:
        if method == "POST":
            want = self._headers.get("if-match", "")
            if want and want != self._etag():
                raise _err(412, "precondition failed, invalid old hash")
            self._apply_policy(body)
        return _Reply(200, self.current_policy(), {"ETag": self._etag()})

    def _apply_policy(self, policy: Any) -> dict[str, Any]:
        """Validate and store a policy file; its ``tagOwners`` become the fake's."""
        if not isinstance(policy, dict):
            raise _err(400, "policy file must be a JSON object (HuJSON comments are not modelled)")
        owners = policy.get("tagOwners") or {}
        if not isinstance(owners, dict) or not all(
            _TAG.fullmatch(t) and isinstance(o, list) for t, o in owners.items()
        ):
            raise _err(400, "tagOwners: keys must be tags, values lists of owners")
        services = ((policy.get("autoApprovers") or {}).get("services")) or {}
        if not isinstance(services, dict) or not all(
            _SVC.fullmatch(n) and isinstance(a, list) for n, a in services.items()
        ):
            raise _err(400, "autoApprovers.services: keys must be svc:<name>, values lists")
        self._policy_set(policy)
        self.policy = json.loads(json.dumps(policy))
        self.tag_owners = {t: list(o) for t, o in owners.items()}
        return self.policy

    def _policy_set(self, policy: dict[str, Any]) -> None:
        """Called with a valid policy before it is stored (a hook: the box applies it)."""

    def _public_key(self, key: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in key.items() if k != "key"}

    def _create_key(self, body: Any, token: Token) -> _Reply:
        if not isinstance(body, dict):
            raise _err(400, "invalid request body")
        keytype = body.get("keyType", "auth")
        if keytype != "auth":
            raise _err(400, f"keyType {keytype!r} is not modelled by the fake")
        devices = (body.get("capabilities") or {}).get("devices")
        if not isinstance(devices, dict):
            raise _err(400, "capabilities.devices is required")
        create = dict(devices.get("create") or {})
        tags = list(create.get("tags") or [])
        if token.client is not None and not tags:
            raise _err(400, "tags are required when creating an auth key with an OAuth client")
        self._check_tags(token, tags)
        desc = str(body.get("description", ""))
        if len(desc) > 50:
            raise _err(400, "description must be at most 50 characters")
        expiry = int(body.get("expirySeconds") or 90 * 86400)
        kid = f"k{secrets.token_hex(6)}CNTRL"
        secret = f"tskey-auth-{kid}-{secrets.token_hex(16)}"
        now = datetime.now(UTC)
        key = {
            "id": kid,
            "key": secret,
            "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires": (now + timedelta(seconds=expiry)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "capabilities": {
                "devices": {
                    "create": {
                        "reusable": bool(create.get("reusable")),
                        "ephemeral": bool(create.get("ephemeral")),
                        "preauthorized": bool(create.get("preauthorized")),
                        "tags": tags,
                    }
                }
            },
            "description": desc,
            "invalid": False,
        }
        self.keys[kid] = key
        self.key_secrets[kid] = secret
        return _Reply(200, key)

    def _service(self, method: str, name: str, body: Any) -> _Reply:
        current = self.services.get(name)
        if method == "GET":
            if current is None:
                raise _err(404, "service not found")
            return _Reply(200, current)
        if method == "DELETE":
            if current is None:
                raise _err(404, "service not found")
            del self.services[name]
            return _Reply(200)
        if method != "PUT":
            raise _err(405, "method not allowed")
        if not _SVC.fullmatch(name):
            raise _err(400, f"invalid service name {name!r}")
        if not isinstance(body, dict) or body.get("name", name) != name:
            raise _err(400, "service name in body does not match the path")
        ports = list(body.get("ports") or [])
        if not ports or not all(isinstance(p, str) and _PORT.fullmatch(p) for p in ports):
            raise _err(400, "ports must be tcp:<port> or do-not-validate")
        addrs = list(body.get("addrs") or [])
        if current is None:
            n = len(self.services) + 1 + next(self._seq)
            addrs = [str(ipaddress.ip_address("100.100.0.0") + n), f"fd7a:115c:a1e0:ab12::{n:x}"]
        elif sorted(addrs) != sorted(current["addrs"]):
            raise _err(400, "addrs must be the service's current addresses")
        svc = {
            "name": name,
            "addrs": addrs,
            "comment": str(body.get("comment", "")),
            "annotations": dict(body.get("annotations") or {}),
            "ports": ports,
            "tags": list(body.get("tags") or []),
        }
        self.services[name] = svc
        return _Reply(200, svc)
