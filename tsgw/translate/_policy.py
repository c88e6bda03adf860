"""TailscaleRoutePolicy → changes to the proxy groups its target objects were translated into.

A policy targets objects of its own namespace, whole or one section (listener). Conflicts are
resolved as Gateway API resolves them for policies (GEP-713, policy attachment): the older policy
wins, by creation time, then namespace and name; a policy on a whole object conflicts with one on
any of its sections, and the other way round. The loser is Accepted=False, Conflicted. A policy
of HTTP-only settings (timeout, retries, requestHeaders) on a target with no HTTP or gRPC
listener is Invalid, unless it also sets access (then those settings are ignored and said so).
On the routes it reaches, a policy's timeout fills in where a rule set none, its retries and
request headers replace theirs, and its access policy (tailnet tags, users and policy-file
groups resolved to device addresses; users and groups match untagged devices only) applies to
the listeners. Status is per target, as Gateway API's
PolicyAncestorStatus has it, and one Accepted condition for the whole policy.

A policy may also target a Gateway API HTTPRoute or GRPCRoute (or one of its rules), which
Envoy Gateway serves: only its access rules apply there, through tsgw's Envoy Gateway extension.
:func:`route_access_objects` derives from such policies the TailscaleRouteAccess objects Envoy
Gateway passes to the extension (``policyResources``), tags and users resolved to addresses
from the tailnet's facts: a change of the facts changes their spec, which is what makes Envoy
Gateway translate again (docs/envoy-gateway.md). Conflicts on a route follow the same rule.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

from tsgw import api
from tsgw.model import (
    AccessPolicy,
    AccessRule,
    AncestorVerdict,
    Condition,
    HeaderChanges,
    ObjectStatus,
    PolicyDetails,
    ProxyGroup,
    Retries,
)
from tsgw.translate._context import _cond, _Ctx, _is_ip, _ref
from tsgw.translate._inputs import TailnetFacts

__all__ = ["ROUTE_ACCESS_KIND", "ROUTE_KINDS", "apply_policies", "resolve_access", "route_access_objects"]

ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute"})
"""Gateway API route kinds a TailscaleRoutePolicy may target (group gateway.networking.k8s.io)."""

ROUTE_ACCESS_KIND = "TailscaleRouteAccess"
"""The kind (group gateway.tailscale.com) of the objects :func:`route_access_objects` derives."""


def resolve_access(policy: api.Access, facts: TailnetFacts) -> AccessPolicy:
    """Access rules with tags, users and groups resolved to the addresses of the tailnet's
    devices they match (a rule matching no device keeps its CIDRs only: it may match nothing).
    Users and groups match untagged devices only: a tagged device belongs to its tags, not to
    the user who tagged it (Tailscale's policy says the same). A group's members are the users
    whose facts list it (the tailnet policy file's ``groups``)."""
    rules = []
    for r in policy.rules:
        cidrs: set[str] = {str(ipaddress.ip_network(c, strict=False)) for c in r.cidrs}
        groups = set(r.groups)
        for d in facts.devices:
            if set(r.tags) & set(d.tags) or (
                not d.tags and d.user and _owner_matches(r, groups, d.user, facts)
            ):
                for a in d.addresses:
                    if _is_ip(a):
                        cidrs.add(str(ipaddress.ip_network(a)))
        rules.append(AccessRule(r.action is api.AccessAction.ALLOW, tuple(sorted(cidrs))))
    return AccessPolicy(tuple(rules), policy.default_action is api.AccessAction.ALLOW)


def _owner_matches(r: api.AccessRule, groups: set[str], user: str, facts: TailnetFacts) -> bool:
    if user in r.users:
        return True
    u = facts.users.get(user)
    return u is not None and not groups.isdisjoint(u.groups)


def apply_policies(
    ctx: _Ctx, groups: list[ProxyGroup], policies: list[api.Object[Any]]
) -> tuple[list[ProxyGroup], list[ObjectStatus]]:
    by_owner = {(g.owner.kind, g.owner.namespace, g.owner.name): i for i, g in enumerate(groups)}
    # Older policy first (creation time, then name), as Gateway API resolves conflicts.
    policies = sorted(
        policies, key=lambda p: (p.metadata.creation_timestamp, p.metadata.namespace, p.metadata.name)
    )
    claimed: dict[tuple[str, str, str, str], str] = {}
    statuses: list[ObjectStatus] = []
    for pol in policies:
        spec: api.TailscaleRoutePolicySpec = pol.spec
        ns = pol.metadata.namespace
        ancestors: list[AncestorVerdict] = []
        conds: list[Condition] = []
        for t in spec.target_refs:
            key = (t.kind, ns, t.name, t.section_name or "")
            idx = by_owner.get((t.kind, ns, t.name))
            holder = _conflict_holder(claimed, key)
            if t.kind in ROUTE_KINDS:
                cond = _route_fit(spec, t, holder, ctx.inputs.tailnets)
                if cond.status:
                    claimed[key] = pol.metadata.name
            elif idx is None:
                cond = _cond(
                    "Accepted", False, "TargetNotFound", f"{t.kind} {t.name!r} not found or not translated"
                )
            elif holder is not None:
                cond = _cond(
                    "Accepted", False, "Conflicted", f"TailscaleRoutePolicy {holder!r} already targets it"
                )
            else:
                cond = _policy_fit(spec, groups[idx], t)
                if cond.status:
                    claimed[key] = pol.metadata.name
                    g = groups[idx]
                    facts = ctx.inputs.tailnets.get(g.tailnet, TailnetFacts())
                    groups[idx] = _with_policy(g, spec, t.section_name, facts)
            ancestors.append(AncestorVerdict(t.group, t.kind, t.name, ns, t.section_name or None, (cond,)))
            conds.append(cond)
        statuses.append(ObjectStatus(_ref(pol), _merge(conds), PolicyDetails(tuple(ancestors))))
    return groups, statuses


_HTTP_ONLY = ("timeout", "retries", "requestHeaders")
_DENY_ALL = AccessPolicy((), False)


def _http_only(spec: api.TailscaleRoutePolicySpec) -> list[str]:
    return [
        name
        for name, value in zip(_HTTP_ONLY, (spec.timeout, spec.retries, spec.request_headers), strict=True)
        if value
    ]


def _route_fit(
    spec: api.TailscaleRoutePolicySpec, t: Any, holder: str | None, tailnets: Mapping[str, TailnetFacts]
) -> Condition:
    """Whether a policy takes effect on an HTTPRoute or GRPCRoute: Envoy Gateway applies its
    access rules through tsgw's extension; tsgw does not watch Gateway API routes, so a route
    that does not exist is not detected here (Envoy Gateway then passes the policy nowhere)."""
    if holder is not None:
        return _cond("Accepted", False, "Conflicted", f"TailscaleRoutePolicy {holder!r} already targets it")
    ignored = _http_only(spec)
    if spec.access is None:
        return _cond(
            "Accepted",
            False,
            "Invalid",
            f"{', '.join(ignored)}: not applied to {t.kind}s (use Envoy Gateway's own policies); "
            "only access is",
        )
    notes = ["access applies through Envoy Gateway"]
    if ignored:
        notes.append(f"{', '.join(ignored)} ignored on {t.kind}s")
    tailnet = spec.tailnet_ref.name if spec.tailnet_ref is not None else ""
    if _names_devices(spec.access) and tailnet not in tailnets:
        notes.append(
            f"the devices of tailnet {tailnet!r} are not known yet: every request is denied until they are"
        )
    return _cond("Accepted", True, "Accepted", "; ".join(notes))


def _names_devices(access: api.Access) -> bool:
    """Whether rules name tags, users or groups, which only the tailnet's facts turn into addresses."""
    return any(r.tags or r.users or r.groups for r in access.rules)


def _conflict_holder(
    claimed: dict[tuple[str, str, str, str], str], key: tuple[str, str, str, str]
) -> str | None:
    whole = (*key[:3], "")
    holder = claimed.get(key) or (claimed.get(whole) if key[3] else None)
    if not key[3] and holder is None:
        holder = next((v for k, v in claimed.items() if k[:3] == key[:3]), None)
    return holder


def route_access_objects(
    policies: list[api.Object[Any]], tailnets: Mapping[str, TailnetFacts]
) -> list[dict[str, Any]]:
    """The TailscaleRouteAccess of each TailscaleRoutePolicy with access rules that holds at
    least one HTTPRoute or GRPCRoute target (older policy first, as :func:`apply_policies`
    decides), as Kubernetes JSON: same namespace and name as the policy, the targets it holds,
    and its rules with tags, users and groups resolved from the facts of its ``tailnetRef``. While those
    facts are not known (a tailnet not read yet, or not there), a policy whose rules name tags
    or users gets no rules and default Deny: it is never opened wider than it says (one of CIDRs
    only needs no facts). Pure: the same policies and facts
    give the same objects."""
    policies = sorted(
        policies, key=lambda p: (p.metadata.creation_timestamp, p.metadata.namespace, p.metadata.name)
    )
    claimed: dict[tuple[str, str, str, str], str] = {}
    out: list[dict[str, Any]] = []
    for pol in policies:
        spec: api.TailscaleRoutePolicySpec = pol.spec
        if spec.access is None:
            continue
        ns = pol.metadata.namespace
        held = []
        for t in spec.target_refs:
            if t.kind not in ROUTE_KINDS:
                continue
            key = (t.kind, ns, t.name, t.section_name or "")
            if _conflict_holder(claimed, key) is None:
                claimed[key] = pol.metadata.name
                ref = {"group": t.group, "kind": t.kind, "name": t.name}
                if t.section_name:
                    ref["sectionName"] = t.section_name
                held.append(ref)
        if not held:
            continue
        facts = tailnets.get(spec.tailnet_ref.name) if spec.tailnet_ref is not None else None
        if facts is None and not _names_devices(spec.access):
            facts = TailnetFacts()  # CIDRs only: nothing to look up
        access = resolve_access(spec.access, facts) if facts is not None else _DENY_ALL
        out.append(
            {
                "apiVersion": api.API_VERSION,
                "kind": ROUTE_ACCESS_KIND,
                "metadata": {"name": pol.metadata.name, "namespace": ns},
                "spec": {
                    "policy": pol.metadata.name,
                    "targetRefs": held,
                    "rules": [
                        {"action": "Allow" if r.allow else "Deny", "cidrs": list(r.cidrs)}
                        for r in access.rules
                    ],
                    "defaultAction": "Allow" if access.default_allow else "Deny",
                },
            }
        )
    return sorted(out, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))


def _policy_fit(spec: api.TailscaleRoutePolicySpec, g: ProxyGroup, t: Any) -> Condition:
    """Whether a policy can take effect on one target: its section must exist, and a policy of
    HTTP-only settings on a target with no HTTP listener would do nothing (the schema cannot
    know the target's protocols, so translation says so)."""
    selected = [li for li in g.listeners if t.section_name is None or t.section_name in li.sections]
    if not selected:
        return _cond(
            "Accepted", False, "TargetNotFound", f"{t.kind} {t.name!r} has no section {t.section_name!r}"
        )
    http_only = [
        name
        for name, value in (
            ("timeout", spec.timeout),
            ("retries", spec.retries),
            ("requestHeaders", spec.request_headers),
        )
        if value
    ]
    if not http_only or any(li.routes for li in selected):
        return _cond("Accepted", True, "Accepted")
    fields = ", ".join(http_only)
    if spec.access is None:
        return _cond(
            "Accepted",
            False,
            "Invalid",
            f"{fields}: for HTTP and gRPC listeners only, and the target has only TCP",
        )
    return _cond(
        "Accepted", True, "Accepted", f"access applies; {fields} ignored: for HTTP and gRPC listeners only"
    )


def _merge(conds: list[Condition]) -> tuple[Condition, ...]:
    """One Accepted condition for the whole policy: true only if every target accepted it."""
    bad = [c for c in conds if not c.status]
    if not bad:
        return (_cond("Accepted", True, "Accepted"),)
    return (_cond("Accepted", False, bad[0].reason, "; ".join(c.message for c in bad)),)


def _with_policy(
    g: ProxyGroup, spec: api.TailscaleRoutePolicySpec, section: str | None, facts: TailnetFacts
) -> ProxyGroup:
    access = resolve_access(spec.access, facts) if spec.access is not None else None
    headers = HeaderChanges()
    if spec.request_headers is not None:
        rh = spec.request_headers
        headers = HeaderChanges(
            set=tuple((h.name, h.value) for h in rh.set),
            add=tuple((h.name, h.value) for h in rh.add),
            remove=rh.remove,
        )
    retries = None
    if spec.retries is not None:
        r = spec.retries
        retries = Retries(
            r.attempts, r.retry_on, api.parse_duration(r.per_try_timeout) if r.per_try_timeout else None
        )
    timeout = api.parse_duration(spec.timeout) if spec.timeout else None
    out = []
    for li in g.listeners:
        if section is not None and section not in li.sections:
            out.append(li)
            continue
        routes = tuple(
            dataclasses.replace(
                r,
                timeout_s=r.timeout_s if r.timeout_s is not None else timeout,
                retries=retries or r.retries,
                request_headers=headers,
            )
            for r in li.routes
        )
        out.append(dataclasses.replace(li, routes=routes, access=access or li.access))
    return dataclasses.replace(g, listeners=tuple(out))
