"""The per-stream, per-type protocol state of the ADS server, with no I/O.

The server feeds each decoded request to :meth:`SotwType.on_request` or
:meth:`DeltaType.on_request`, then asks :meth:`plan` whether (and what) to send given the
current snapshot; :meth:`sent` records a response. Keeping this pure lets property tests drive
it through arbitrary request sequences.

Rules kept here (Envoy's ``xds_protocol.rst``):

* SotW: a request whose ``response_nonce`` is not the latest nonce sent for its type is stale
  and ignored whole. Delta: subscription changes are honoured whatever the nonce; the nonce only
  correlates ACKs and NACKs.
* A NACK (``error_detail`` set) never causes the rejected version to be sent again; the type
  is parked until its content changes.
* SotW answers at most one outstanding response per type: a push waits for the ACK of the
  previous one, which is the natural flow control of the protocol.
* After a CDS response, EDS is sent again even when unchanged: an updated cluster stays in
  warming until it receives its ClusterLoadAssignment.
* An ACK ends the type's current NACK (``nack`` is what the client rejects *now*); what it
  rejected stays remembered by version, so re-applied content it refused before reads as
  rejected again (:meth:`SotwType.sync`, :meth:`DeltaType.sync`).
* What the client holds is what it last reported: an ACK's version, or the ``version_info`` (SotW)
  or ``initial_resource_versions`` (delta) of its first request on a new stream, so an Envoy
  that reconnects holding the current version is in sync although nothing was sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from tsgw.xds._snapshot import TypeResources


class Verdict(Enum):
    """What a request meant."""

    INITIAL = "initial"
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"
    UPDATE = "update"  # a request with no known nonce: a (re)subscription


@dataclass
class Nack:
    """An Envoy's rejection of one version of one type."""

    version: str
    detail: str
    at: float = field(default_factory=time.time)


class Sync(Enum):
    """Whether a client holds a type's current version (:meth:`SotwType.sync`)."""

    SYNCED = "SYNCED"
    """It holds the current version, or wants nothing of the type."""
    PENDING = "PENDING"
    """The current version is not (yet) acknowledged: being sent, or waiting for an ACK."""
    REJECTED = "REJECTED"
    """It rejected the current version (now or earlier on this stream) and keeps an older one."""


_REMEMBERED_REJECTIONS = 32


def _remember(rejected: dict[str, Nack], nack: Nack) -> None:
    rejected.pop(nack.version, None)
    rejected[nack.version] = nack
    while len(rejected) > _REMEMBERED_REJECTIONS:
        del rejected[next(iter(rejected))]


@dataclass(frozen=True)
class SotwPlan:
    version: str
    names: tuple[str, ...]  # resource names to include, in order


@dataclass
class SotwType:
    """State-of-the-world state of one type on one stream."""

    type_url: str
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    seen_request: bool = False
    pending: bool = False
    """A request awaits an answer (at most one response is outstanding per type)."""
    nonce: str = ""
    sent_version: str | None = None
    sent_names: frozenset[str] = frozenset()
    client_version: str = ""
    """version_info of the last accepted request (what the client holds)."""
    acked_version: str | None = None
    nack: Nack | None = None
    """The client's rejection of the version it was sent last; None once it ACKs again."""
    parked_version: str | None = None
    """The version the client rejected last."""
    rejected: dict[str, Nack] = field(default_factory=dict)
    """Versions the client rejected (the last 32), with why: never sent again on this stream.
    Versions are content hashes, so the same content would be rejected again."""
    force: bool = False
    """Send the next time even if nothing changed (EDS after CDS)."""
    stale: int = 0
    suppressed: int = 0

    def on_request(
        self,
        version_info: str,
        response_nonce: str,
        resource_names: Iterable[str],
        error_detail: str | None,
    ) -> Verdict:
        if response_nonce and self.nonce and response_nonce != self.nonce:
            # Checked before touching the names: Envoy sends one stale EDS request per updated
            # cluster (1,000 requests of 1,000 names after a 1,000-cluster CDS push).
            self.stale += 1
            return Verdict.STALE
        # Sets built in C: Envoy repeats all 1,000 EDS names in each of ~1,000 requests that
        # follow a 1,000-cluster CDS update.
        names = frozenset(resource_names)
        star = "*" in names
        if star:
            names = names - {"*"}
        first = not self.seen_request
        self.seen_request = True
        if first:
            self.wildcard = star or not names
        elif star:
            self.wildcard = True
        elif names:
            self.wildcard = False  # naming resources ends the legacy wildcard
        # (an empty list after an explicit subscription unsubscribes from everything)
        self.names = names
        self.pending = True
        if error_detail is not None:
            # The NACK's version_info is the last good version; the rejected one is what we sent.
            rejected = self.sent_version if self.sent_version is not None else version_info
            self.nack = Nack(rejected, error_detail)
            self.parked_version = rejected
            _remember(self.rejected, self.nack)
            return Verdict.NACK
        self.client_version = version_info
        if response_nonce and response_nonce == self.nonce:
            self.acked_version = version_info
            if version_info == self.sent_version:
                self.nack = None  # it took what it was sent last: nothing is rejected now
            return Verdict.ACK
        return Verdict.INITIAL if first else Verdict.UPDATE

    def plan(self, res: TypeResources | None) -> SotwPlan | None:
        """The response to send now, or None (nothing pending, nothing new, or parked)."""
        if res is None or not self.pending:
            return None
        if not self.wildcard and not self.names:
            return None
        if res.version in self.rejected:
            self.suppressed += 1
            return None
        items = res.items
        known = self.sent_version if self.sent_version is not None else self.client_version
        if res.version == known and not self.force:
            # Nothing changed; only names requested since the last response can be owed.
            if self.wildcard:
                return None
            extra = self.names - self.sent_names
            if not extra or not any(n in items for n in extra):
                return None
        names = tuple(items) if self.wildcard else tuple(n for n in sorted(self.names) if n in items)
        return SotwPlan(res.version, names)

    def sync(self, res: TypeResources) -> tuple[Sync, Nack | None]:
        """Whether the client holds `res` (the type in the current snapshot), and the rejection
        when it refused it."""
        if self.seen_request and not self.wildcard and not self.names:
            return Sync.SYNCED, None  # it asks for nothing of this type
        if self.client_version == res.version:
            return Sync.SYNCED, None
        nack = self.rejected.get(res.version)
        if nack is not None:
            return Sync.REJECTED, nack
        return Sync.PENDING, None

    def sent(self, plan: SotwPlan, nonce: str) -> None:
        self.nonce = nonce
        self.sent_version = plan.version
        # Only named subscriptions compare names; a wildcard stream of 1,000 clusters would
        # otherwise build a 1,000-name set per push.
        self.sent_names = frozenset() if self.wildcard else frozenset(plan.names)
        self.pending = False
        self.force = False


@dataclass(frozen=True)
class DeltaPlan:
    system_version: str
    names: tuple[str, ...]
    versions: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass
class DeltaType:
    """Incremental (delta) state of one type on one stream."""

    type_url: str
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    seen_request: bool = False
    owe_initial: bool = False
    """The first wildcard request gets an answer even if empty (Envoy's init waits for it)."""
    client: dict[str, str] = field(default_factory=dict)
    """name → version the client holds (or was last sent: recorded at send time)."""
    told_absent: set[str] = field(default_factory=set)
    resend: set[str] = field(default_factory=set)
    """Names (re)subscribed since they were last sent: answered even if the client has them."""
    rejected: dict[tuple[str, str], None] = field(default_factory=dict)
    """(name, version) pairs the client NACKed, oldest first (bounded): never sent again."""
    in_flight: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    """nonce → (system version, {name: version}) of responses not yet ACKed or NACKed."""
    sent_version: str | None = None
    acked_version: str | None = None
    nack: Nack | None = None
    """The client's rejection of the response it answered last; None once it ACKs again."""
    rejected_versions: dict[str, Nack] = field(default_factory=dict)
    """System versions of responses the client rejected (the last 32), with why."""
    suppressed: int = 0
    stale: int = 0

    def on_request(
        self,
        subscribe: Iterable[str],
        unsubscribe: Iterable[str],
        initial_versions: Mapping[str, str],
        response_nonce: str,
        error_detail: str | None,
    ) -> Verdict:
        sub, unsub = list(subscribe), list(unsubscribe)
        first = not self.seen_request
        self.seen_request = True
        if first:
            self.client.update(initial_versions)
            if not sub or "*" in sub:
                self.wildcard = True
                self.owe_initial = True
        elif "*" in sub:
            self.wildcard = True
        if "*" in unsub:
            self.wildcard = False
        for n in sub:
            if n != "*":
                self.names.add(n)
                # A repeated subscribe must be answered with the resource again.
                self.resend.add(n)
                self.told_absent.discard(n)
        for n in unsub:
            if n != "*":
                self.names.discard(n)
                self.told_absent.discard(n)
                if self.wildcard:
                    # Still wanted through the wildcard: the protocol says send it back.
                    self.resend.add(n)
                else:
                    self.resend.discard(n)
                    self.client.pop(n, None)  # the client drops what it unsubscribed
        if not response_nonce:
            return Verdict.INITIAL if first else Verdict.UPDATE
        entry = self.in_flight.pop(response_nonce, None)
        if entry is None:
            self.stale += 1
            return Verdict.STALE
        system_version, versions = entry
        if error_detail is not None:
            self.rejected.update(dict.fromkeys(versions.items()))
            while len(self.rejected) > 4096:
                del self.rejected[next(iter(self.rejected))]
            self.nack = Nack(system_version, error_detail)
            _remember(self.rejected_versions, self.nack)
            return Verdict.NACK
        self.acked_version = system_version
        self.nack = None
        for pair in versions.items():
            self.rejected.pop(pair, None)  # accepted after all
        return Verdict.ACK

    def plan(self, res: TypeResources | None) -> DeltaPlan | None:
        if res is None or not self.seen_request:
            return None
        items = res.items
        wanted: Iterable[str] = items if self.wildcard else (n for n in self.names if n in items)
        names: list[str] = []
        versions: list[str] = []
        for n in wanted:
            v = items[n].version
            if self.client.get(n) == v and n not in self.resend:
                continue
            if (n, v) in self.rejected:
                self.suppressed += 1
                continue
            names.append(n)
            versions.append(v)
        removed = [n for n in self.client if n not in items]
        if not self.wildcard:
            removed += [
                n for n in self.names if n not in items and n not in self.client and n not in self.told_absent
            ]
        if not names and not removed and not self.owe_initial:
            return None
        return DeltaPlan(res.version, tuple(names), tuple(versions), tuple(sorted(set(removed))))

    def sync(self, res: TypeResources) -> tuple[Sync, Nack | None]:
        """Whether the client holds every resource of `res` it wants (and nothing removed), and
        the rejection when it refused them."""
        if self.in_flight:
            return Sync.PENDING, None
        items = res.items
        wanted = items if self.wildcard else [n for n in self.names if n in items]
        # What was sent is recorded as held at send time, a rejected version included: look
        # for rejections first.
        refused = [n for n in wanted if (n, items[n].version) in self.rejected]
        if refused:
            nack = self.rejected_versions.get(res.version) or self.nack
            return Sync.REJECTED, nack or Nack(res.version, f"rejected {sorted(refused)[:3]}")
        if all(self.client.get(n) == items[n].version for n in wanted) and all(
            n in items for n in self.client
        ):
            return Sync.SYNCED, None
        return Sync.PENDING, None

    def sent(self, plan: DeltaPlan, nonce: str) -> None:
        self.owe_initial = False
        for n, v in zip(plan.names, plan.versions, strict=True):
            self.client[n] = v
            self.told_absent.discard(n)
            self.resend.discard(n)
        for n in plan.removed:
            self.client.pop(n, None)
            if n in self.names:
                self.told_absent.add(n)
        self.in_flight[nonce] = (plan.system_version, dict(zip(plan.names, plan.versions, strict=True)))
        if len(self.in_flight) > 64:  # a client that never answers must not grow this without bound
            self.in_flight.pop(next(iter(self.in_flight)))
        self.sent_version = plan.system_version
