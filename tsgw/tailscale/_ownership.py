"""Who hosts a Tailscale Service: owner claims recorded on the service itself. Pure functions.

A Tailscale Service (``svc:web``) is a tailnet-wide name that several operators (one per
cluster) and several objects may want. The API has no owner field, so the claims live in one
annotation of the service, in the shape Tailscale's own operator uses for its
``tailscale.com/owner-references`` (``cmd/k8s-operator/svc-for-pg.go``), under tsgw's own key so
the two operators never mistake each other's claims for their own::

    gateway.tailscale.com/owner-references:
      {"ownerRefs": [{"operatorID": "c1", "resource": {"kind": "TailscaleServices",
                      "namespace": "apps", "name": "web", "uid": "…"}}]}

Rules (the caller, :mod:`tsgw.controllers._services`, does the API calls):

- A service without this annotation that already exists belongs to someone else (a human, the
  admin console, Tailscale's operator): tsgw never takes it over (:func:`plan_claim` says ``foreign``).
- Adding a claim keeps every other claim; a claim is identified by operator and resource
  (kind, namespace, name), so a re-created object (new uid) replaces its old claim.
- The definition (ports, tags) must agree with what other owners already set; a disagreement
  is a ``conflict``, reported on the object, and the service is left as it is, so two clusters
  never flap one definition. While others hold claims, the comment and other annotations stay
  as they are too: only the owner list changes.
- Releasing removes only the caller's claim; the service is deleted only when no claim is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from ._types import TailscaleService

__all__ = [
    "OWNER_ANNOTATION",
    "OwnerRef",
    "ServicePlan",
    "owners_of",
    "plan_claim",
    "plan_release",
    "with_owners",
]

OWNER_ANNOTATION = "gateway.tailscale.com/owner-references"
"""The annotation of a Tailscale Service that lists the tsgw objects hosting it."""


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """One claim: an object of one operator (``operator_id``: the cluster's id) hosts the service."""

    operator_id: str
    kind: str
    namespace: str
    name: str
    uid: str = ""

    def same_object(self, other: OwnerRef) -> bool:
        """The same object of the same operator, whatever its uid (a re-created object)."""
        return (self.operator_id, self.kind, self.namespace, self.name) == (
            other.operator_id,
            other.kind,
            other.namespace,
            other.name,
        )

    def to_json(self) -> dict[str, object]:
        res: dict[str, str] = {"kind": self.kind, "namespace": self.namespace, "name": self.name}
        if self.uid:
            res["uid"] = self.uid
        return {"operatorID": self.operator_id, "resource": res}


def owners_of(service: TailscaleService) -> tuple[OwnerRef, ...] | None:
    """The claims on ``service``; None when it carries no (readable) owner annotation, i.e. it is
    not tsgw's. An annotation that does not parse counts as foreign too: never guess."""
    text = service.annotations.get(OWNER_ANNOTATION)
    if text is None:
        return None
    try:
        doc = orjson.loads(text)
        refs = doc["ownerRefs"]
        out = []
        for r in refs:
            res = r["resource"]
            out.append(
                OwnerRef(
                    str(r["operatorID"]),
                    str(res["kind"]),
                    str(res.get("namespace", "")),
                    str(res["name"]),
                    str(res.get("uid", "")),
                )
            )
    except (ValueError, TypeError, KeyError):
        return None
    return tuple(out)


def with_owners(annotations: Mapping[str, str], owners: Sequence[OwnerRef]) -> dict[str, str]:
    """``annotations`` with the owner annotation set to ``owners`` (sorted: one text per set)."""
    out = dict(annotations)
    refs = sorted(set(owners), key=lambda o: (o.operator_id, o.kind, o.namespace, o.name, o.uid))
    out[OWNER_ANNOTATION] = orjson.dumps({"ownerRefs": [o.to_json() for o in refs]}).decode()
    return out


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """What to do to make ``me`` a host of a service, given its current state.

    ``action``: ``none`` (nothing to write), ``put`` (write ``service``), ``delete`` (the last
    claim was released), ``foreign`` (exists and is not tsgw's: leave it) or ``conflict`` (other
    owners defined it differently: leave it; ``reason`` says how)."""

    action: Literal["none", "put", "delete", "foreign", "conflict"]
    service: TailscaleService | None = None
    reason: str = ""


def _definition(s: TailscaleService) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(sorted(s.ports)), tuple(sorted(s.tags))


def plan_claim(current: TailscaleService | None, desired: TailscaleService, me: OwnerRef) -> ServicePlan:
    """How to claim ``desired`` (name, ports, tags, comment) for ``me`` over ``current``."""
    if current is None:
        return ServicePlan(
            "put",
            TailscaleService(
                name=desired.name,
                ports=desired.ports,
                tags=desired.tags,
                comment=desired.comment,
                annotations=with_owners(desired.annotations, [me]),
            ),
        )
    owners = owners_of(current)
    if owners is None:
        return ServicePlan(
            "foreign",
            reason=f"{current.name} exists and was not made by tsgw (no {OWNER_ANNOTATION} annotation)",
        )
    others = [o for o in owners if not o.same_object(me)]
    if others and _definition(current) != _definition(desired):
        names = ", ".join(sorted({f"{o.operator_id}/{o.kind}/{o.namespace}/{o.name}" for o in others}))
        ports, tags = _definition(current)
        return ServicePlan(
            "conflict",
            reason=(
                f"{current.name} is hosted by {names} with ports {list(ports)} and tags {list(tags)}; "
                f"this object wants ports {sorted(desired.ports)} and tags {sorted(desired.tags)}"
            ),
        )
    claimed = [*others, me]
    want = TailscaleService(
        name=desired.name,
        addrs=current.addrs,  # the VIPs control allocated: keep them
        ports=desired.ports if not others else current.ports,
        tags=desired.tags if not others else current.tags,
        # Shared: the comment and annotations stay the first owner's, as the ports and tags do
        # (two clusters whose objects differ in namespace would otherwise rewrite the comment
        # in turn on every resync).
        comment=(desired.comment or current.comment) if not others else current.comment,
        annotations=with_owners(
            {**current.annotations, **desired.annotations} if not others else current.annotations, claimed
        ),
    )
    if want == current or (
        set(owners) == set(claimed)
        and _definition(want) == _definition(current)
        and want.comment == current.comment
        and {k: v for k, v in want.annotations.items() if k != OWNER_ANNOTATION}
        == {k: v for k, v in current.annotations.items() if k != OWNER_ANNOTATION}
    ):
        return ServicePlan("none", current)
    return ServicePlan("put", want)


def plan_release(current: TailscaleService, me: OwnerRef) -> ServicePlan:
    """How to give up ``me``'s claim: ``put`` the service without it, ``none`` when ``me`` held
    none, ``delete`` when no claim is left."""
    owners = owners_of(current)
    if owners is None or not any(o.same_object(me) for o in owners):
        return ServicePlan("none", current)
    rest = [o for o in owners if not o.same_object(me)]
    if not rest:
        return ServicePlan("delete", reason="last owner")
    return ServicePlan(
        "put",
        TailscaleService(
            name=current.name,
            addrs=current.addrs,
            ports=current.ports,
            tags=current.tags,
            comment=current.comment,
            annotations=with_owners(current.annotations, rest),
        ),
    )
