"""The auth-key lifecycle of proxy replicas: one key each, minted once, devices cleaned up.

The prototype minted a key on every reconcile and leaked devices. The rules here:

* A replica gets a key only while it has **no state**: no ``authkey`` waiting, no
  ``device_id``, no tailscaled profile. A restarted pod logs in again from its state, never
  with a new key.
* The key is single use, pre-authorized, tagged, not ephemeral, and is written into the
  replica's state (the ``authkey`` field containerboot reads when ``TS_AUTHKEY`` is unset).
* containerboot deletes ``authkey`` after the first login (``TS_AUTH_ONCE``); if it could not,
  :meth:`AuthKeyLifecycle.ensure` removes it once ``device_id`` shows the device registered.
* A mint survives the operator being killed mid-way: its ticket (the create request, with a
  mark the API lists again) is stored before the request is sent and removed in the key's own
  write, so a ticket found alone means a key may exist that nobody holds; it is revoked
  before the next mint (or the replica's deletion). One more state write per key buys that.
* On proxy deletion, :meth:`AuthKeyLifecycle.delete` deletes the device by the ``device_id``
  kept in the state, and revokes a key that was never used. "Already gone" is success.

State lives behind :class:`ReplicaStateStore` (the controllers implement it on Secrets), so
this module knows nothing of Kubernetes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import structlog

from . import _metrics
from ._client import Client
from ._types import AuthKey, AuthKeyRequest

__all__ = [
    "AuthKeyLifecycle",
    "DeleteResult",
    "EnsureResult",
    "MemoryStateStore",
    "ReplicaStateStore",
    "StateKeys",
]

log = structlog.get_logger("tsgw.tailscale")


class StateKeys:
    """Field names in a replica's state (containerboot's, ``kube/kubetypes``, and tsgw's own)."""

    AUTHKEY = "authkey"
    """The key containerboot logs in with; it deletes the field after login."""
    AUTHKEY_ID = "tsgw-authkey-id"
    """tsgw's: the id of that key, to revoke it if the replica goes away unused."""
    DEVICE_ID = "device_id"
    """containerboot's: the stable node ID once the device registered."""
    DEVICE_FQDN = "device_fqdn"
    DEVICE_IPS = "device_ips"
    MINT_TICKET = "tsgw-mint-ticket"
    """tsgw's: a mint under way (:meth:`tsgw.tailscale.Client.mint_ticket`), written before the
    create request and removed with the key's own write; found on its own, the process that
    wrote it died mid-mint and the key it may have minted is revoked before another is."""
    REISSUE_AUTHKEY = "reissue_authkey"
    """containerboot's request for a new key, naming the refused one (config-file mode only)."""
    # tailscaled's own state store keys: any of them means the replica has logged in before.
    TAILSCALED = ("_machinekey", "_current-profile", "_profiles")


class ReplicaStateStore(Protocol):
    """Where a replica's state lives (a Secret per replica, in the operator)."""

    async def load(self, replica: str) -> Mapping[str, str] | None:
        """The replica's state fields, or None when it has no state object yet."""
        ...

    async def save(self, replica: str, changes: Mapping[str, str | None]) -> None:
        """Merge ``changes`` into the state (None deletes a field), creating it if needed."""
        ...


@dataclass
class MemoryStateStore:
    """A :class:`ReplicaStateStore` in a dict: for tests and standalone runs."""

    data: dict[str, dict[str, str]] = field(default_factory=dict)

    async def load(self, replica: str) -> Mapping[str, str] | None:
        state = self.data.get(replica)
        return dict(state) if state is not None else None

    async def save(self, replica: str, changes: Mapping[str, str | None]) -> None:
        state = self.data.setdefault(replica, {})
        for k, v in changes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v


@dataclass(frozen=True)
class EnsureResult:
    minted: bool
    """A key was minted and stored in this call."""
    key_id: str = ""
    """The id of the key waiting in the state (empty once used or unknown)."""
    device_id: str = ""
    """The registered device's stable node ID, once containerboot wrote it."""


@dataclass(frozen=True)
class DeleteResult:
    device_deleted: bool
    """The device existed and was deleted now."""
    key_revoked: bool
    """An unused key existed and was revoked now."""


def has_state(state: Mapping[str, str] | None) -> bool:
    """Whether a replica already has a key waiting, a device, or tailscaled state."""
    if not state:
        return False
    names = (StateKeys.AUTHKEY, StateKeys.DEVICE_ID, *StateKeys.TAILSCALED)
    return any(state.get(k) for k in names)


class AuthKeyLifecycle:
    """Mints and cleans up after replicas of one proxy through ``client`` and ``store``.

    Calls for the same replica are serialized in this process, so two reconciles racing on
    one replica still mint one key. (Across operator replicas, leader election does that.)
    """

    def __init__(self, client: Client, store: ReplicaStateStore) -> None:
        self._client = client
        self._store = store
        self._locks: dict[str, anyio.Lock] = {}

    def _lock(self, replica: str) -> anyio.Lock:
        return self._locks.setdefault(replica, anyio.Lock())

    async def ensure(self, replica: str, request: AuthKeyRequest) -> EnsureResult:
        """Give ``replica`` a key if it has no state yet; tidy the key away once registered."""
        async with self._lock(replica):
            state = await self._store.load(replica) or {}
            device_id = state.get(StateKeys.DEVICE_ID, "")
            if device_id:
                stale = {k: None for k in (StateKeys.AUTHKEY, StateKeys.AUTHKEY_ID) if k in state}
                if stale:
                    await self._store.save(replica, stale)
                return EnsureResult(minted=False, device_id=device_id)
            if has_state(state):
                return EnsureResult(minted=False, key_id=state.get(StateKeys.AUTHKEY_ID, ""))
            key = await self._mint(replica, request, "new", state, lambda k: {StateKeys.AUTHKEY: k.key})
            log.info("tailscale.authkey_minted", replica=replica, key_id=key.id, tags=list(key.tags))
            return EnsureResult(minted=True, key_id=key.id)

    async def config_key(
        self,
        replica: str,
        request: AuthKeyRequest,
        *,
        current_key: str | None,
        key_field: str | None = None,
    ) -> str | None:
        """The auth key to write into the replica's tailscaled config file (config-file mode).

        ``current_key`` is the key in the existing config file ("" when it has none), or None
        when the replica has no config yet. Returns the key the file should hold: a new one
        when there is no config yet or the proxy asked for a re-issue (``reissue_authkey`` in
        its state names the refused key; the old device is deleted first, as it can never log
        in again); the current one while the device has not registered;
        None once it has (the used key leaves the file).

        ``key_field``: a state field to store a newly minted key in, with its id, in the same
        write, so the caller has nothing more to store for it.
        """
        async with self._lock(replica):
            state = await self._store.load(replica) or {}
            broken = state.get(StateKeys.REISSUE_AUTHKEY)
            # The request names the refused key; a different key in the config means a new
            # one was written and the proxy has not picked it up yet.
            reissue = broken is not None and (not current_key or broken == current_key)
            if current_key is None or reissue:
                if reissue and state.get(StateKeys.DEVICE_ID):
                    await self._client.delete_device(state[StateKeys.DEVICE_ID], missing_ok=True)
                # A re-issue request stays: containerboot clears it, with the old device's
                # fields, once it read the new key from its config file. Cleared here, the
                # stale device_id beside the new key would read as "registered" and the key
                # would leave the file before the proxy ever read it.
                key = await self._mint(
                    replica,
                    request,
                    "reissue" if reissue else "new",
                    state,
                    lambda k: {key_field: k.key} if key_field is not None else {},
                )
                log.info("tailscale.authkey_minted", replica=replica, key_id=key.id, reissue=reissue)
                return key.key
            if not state.get(StateKeys.DEVICE_ID) or broken is not None:
                return current_key or None  # not registered yet, or a re-issue is in flight
            return None

    async def _mint(
        self,
        replica: str,
        request: AuthKeyRequest,
        reason: str,
        state: Mapping[str, str],
        fields: Callable[[AuthKey], Mapping[str, str]],
    ) -> AuthKey:
        """Mint a key and store it with its id and ``fields(key)`` in one write.

        Crash-safe: the mint's ticket is stored first, so a process killed between the server
        minting and the store (where no ``finally`` runs) leaves a ticket, and the next mint
        for the replica, in this process or a successor, revokes what it minted before minting
        again. A store that fails after the mint revokes the key at once."""
        pending = state.get(StateKeys.MINT_TICKET)
        if pending:
            revoked = await self._client.revoke_minted(pending)
            log.warning("tailscale.authkey_mint_interrupted", replica=replica, revoked=revoked)
        request = AuthKeyRequest(
            tags=request.tags,
            reusable=request.reusable,
            ephemeral=request.ephemeral,
            preauthorized=request.preauthorized,
            expiry_seconds=request.expiry_seconds,
            description=request.description or f"tsgw {replica}"[:50],
        )
        ticket = await self._client.mint_ticket(request)
        await self._store.save(replica, {StateKeys.MINT_TICKET: ticket})
        key = await self._client.create_auth_key(request, ticket=ticket)
        _metrics.AUTH_KEYS_MINTED.labels(self._client.name, reason).inc()
        # Its id, so that a replica removed before it used the key gets it revoked.
        changes: dict[str, str | None] = {
            **fields(key),
            StateKeys.AUTHKEY_ID: key.id,
            StateKeys.MINT_TICKET: None,
        }
        try:
            await self._store.save(replica, changes)
        except BaseException:
            # The key is nowhere a replica could use it: revoke it rather than leak it.
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                try:
                    await self._client.delete_auth_key(key.id, missing_ok=True)
                except Exception as e:  # the save error matters more; the ticket stays for later
                    log.warning(
                        "tailscale.authkey_revoke_failed", replica=replica, key_id=key.id, error=str(e)
                    )
            raise
        return key

    async def delete(self, replica: str) -> DeleteResult:
        """Delete the replica's device (by the ``device_id`` in its state) and any unused key."""
        async with self._lock(replica):
            state = await self._store.load(replica) or {}
            device_deleted = key_revoked = False
            device_id = state.get(StateKeys.DEVICE_ID, "")
            if device_id:
                device_deleted = await self._client.delete_device(device_id, missing_ok=True)
                log.info(
                    "tailscale.device_deleted", replica=replica, device_id=device_id, existed=device_deleted
                )
            ticket = state.get(StateKeys.MINT_TICKET)
            if ticket:  # a mint interrupted: what it may have minted nobody will use
                key_revoked = bool(await self._client.revoke_minted(ticket))
            key_id = state.get(StateKeys.AUTHKEY_ID, "")
            # An unused key: still waiting in the state, or (config-file mode) minted for a
            # replica whose device never registered.
            if key_id and (state.get(StateKeys.AUTHKEY) or not device_id):
                key_revoked = await self._client.delete_auth_key(key_id, missing_ok=True) or key_revoked
                log.info("tailscale.authkey_revoked", replica=replica, key_id=key_id, existed=key_revoked)
            cleared = {
                k: None
                for k in (StateKeys.AUTHKEY, StateKeys.AUTHKEY_ID, StateKeys.MINT_TICKET)
                if k in state
            }
            if cleared:
                await self._store.save(replica, cleared)
            self._locks.pop(replica, None)
            return DeleteResult(device_deleted=device_deleted, key_revoked=key_revoked)
