"""Hypothesis strategies for schema-valid objects, derived from tsgw.api's own declarations
(types, enums, bounds, patterns), then kept only if tsgw.api accepts them (the CEL rules' twins).
A few fields are biased toward names that exist in the test tailnet, so translation goes deep."""

from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any

from hypothesis import strategies as st

from tsgw import api
from tsgw.api import KINDS

_BIAS: dict[str, st.SearchStrategy[Any]] = {
    "tailnetRef": st.just({"name": "corp"}),
    "address": st.sampled_from(
        ["100.64.0.7", "db-eu-1", "db-us-1.tail1234.ts.net", "nosuch", "fd7a:115c:a1e0::7"]
    ),
    "service": st.sampled_from(["svc:billing-api", "svc:web", "svc:none", "web", "pg", "nosuch"]),
    "services": st.lists(st.sampled_from(["web", "pg", "nosuch"]), max_size=2, unique=True),
    "deviceTags": st.lists(
        st.sampled_from(["tag:worker", "tag:gpu", "tag:db", "tag:none"]), max_size=2, unique=True
    ),
    "tags": st.lists(st.sampled_from(["tag:worker", "tag:contractor", "tag:k8s"]), max_size=2, unique=True),
    "gatewayRef": st.just({"name": "eg"}),
    "listeners": st.lists(st.sampled_from(["http", "https", "nosuch"]), max_size=2, unique=True),
    "interval": st.sampled_from(["10s", "1m", "500ms"]),
    "ejectionTime": st.sampled_from(["30s", "2m"]),
    "timeout": st.sampled_from(["1s", "2s", "250ms", "30s"]),
    "perTryTimeout": st.sampled_from(["1s", "100ms"]),
    "cidrs": st.lists(
        st.sampled_from(["100.64.0.0/16", "100.64.2.1/32", "fd7a:115c:a1e0::/48"]), max_size=2, unique=True
    ),
    "users": st.lists(st.sampled_from(["alice@example.com", "bob@example.com"]), max_size=2, unique=True),
    "protocol": st.sampled_from(["TCP", "HTTP", "GRPC", "TLS"]),
    "targetPort": st.one_of(st.none(), st.integers(1, 65535), st.sampled_from(["http", "pg", "nosuch"])),
    "name": st.sampled_from(["a", "b", "c", "web", "http"]),
    "kind": st.sampled_from(["TailscaleServices", "TailscaleGateway"]),
    "selector": st.one_of(st.none(), st.just({"role": "pg-replica"}), st.just({"app": "x"})),
    "affinity": st.none(),
    "tolerations": st.just([]),
    "resources": st.none(),
    "images": st.just({}),
    "nodeSelector": st.just({}),
}


def _leaf(tp: Any, meta: Any) -> st.SearchStrategy[Any]:
    if typing.get_origin(tp) in (typing.Union, type(int | str)) and set(typing.get_args(tp)) == {int, str}:
        return st.one_of(st.integers(1, 65535), st.sampled_from(["http", "pg"]))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from([m.value for m in tp])
    if tp is str:
        if meta is not None and meta.enum:
            return st.sampled_from(list(meta.enum))
        if meta is not None and meta.pattern:
            return st.from_regex(meta.pattern, fullmatch=True).filter(
                lambda s: len(s) <= (meta.max_length or 63)
            )
        return st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=12)
    if tp is int:
        lo = meta.minimum if meta is not None and meta.minimum is not None else 0
        hi = meta.maximum if meta is not None and meta.maximum is not None else 1000
        return st.integers(lo, hi)
    if tp is bool:
        return st.booleans()
    if dataclasses.is_dataclass(tp):
        return object_of(tp)
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        item = _leaf(inner, None)
        if meta is not None and meta.item_pattern:
            item = st.from_regex(meta.item_pattern, fullmatch=True).filter(lambda s: len(s) <= 60)
        lo = meta.min_items or 0 if meta is not None else 0
        hi = min(meta.max_items or 3, 3) if meta is not None else 3
        hi = max(hi, lo)
        keys = meta.list_map_keys if meta is not None else None
        if keys:
            return st.lists(
                item, min_size=lo, max_size=hi, unique_by=lambda d: tuple(str(d.get(k)) for k in keys)
            )
        if inner in (str, int):
            return st.lists(item, min_size=lo, max_size=hi, unique=True)
        return st.lists(item, min_size=lo, max_size=hi)
    if typing.get_origin(tp) is dict:
        return st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["x", "1"]), max_size=2)
    return st.none()


def object_of(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata["tsgw"]
        name = meta.json or (f.name.split("_")[0] + "".join(p.title() for p in f.name.split("_")[1:]))
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        is_optional = typing.get_origin(tp) in (typing.Union, type(int | None)) and len(args) < len(
            typing.get_args(tp)
        )
        if is_optional and len(args) == 1:
            tp = args[0]
        strat = _BIAS[name] if name in _BIAS else _leaf(tp, meta)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        (optional if has_default or is_optional else required)[name] = strat
    return st.fixed_dictionaries(required, optional=optional).map(
        lambda d: {k: v for k, v in d.items() if v is not None}
    )


def _valid(raw: dict[str, Any]) -> bool:
    try:
        api.load(raw)
    except api.ValidationError:
        return False
    return True


def api_object(kind: api.Kind, index: int) -> st.SearchStrategy[dict[str, Any]]:
    md: dict[str, Any] = {"name": f"{kind.singular}-{index}", "uid": f"uid-{kind.kind}-{index}"}
    if kind.namespaced:
        md["namespace"] = "apps"
    return object_of(kind.spec).map(
        lambda spec: {"apiVersion": api.API_VERSION, "kind": kind.kind, "metadata": dict(md), "spec": spec}
    )


def api_objects() -> st.SearchStrategy[list[dict[str, Any]]]:
    """A few schema-valid objects of the namespaced kinds (TailscaleTailnet `corp` comes from the
    case file, so targets resolve)."""
    kinds = [k for k in KINDS if k.kind != "TailscaleTailnet"]
    one = st.tuples(st.sampled_from(kinds), st.integers(0, 3)).flatmap(lambda t: api_object(t[0], t[1]))
    return st.lists(one.filter(_valid), max_size=4, unique_by=lambda o: (o["kind"], o["metadata"]["name"]))
