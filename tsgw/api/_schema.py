"""A small schema language on frozen dataclasses: one declaration gives both the CRD's OpenAPI v3
schema and the parser that builds typed views from raw dicts.

Why not pydantic or a generator from YAML: the API server is the validator in a cluster, the
parser here is the validator in standalone mode, and both must agree. Deriving both from the same
field declarations (type, default, enum, bounds, pattern, CEL rule with its Python twin) is the
simplest way to keep them from drifting apart, which is what the prototype's docs and CRDs did.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from tsgw.api._errors import ValidationError

__all__ = [
    "Rule",
    "field",
    "openapi",
    "parse",
    "to_json",
]

_MISSING: Any = dataclasses.MISSING


@dataclass(frozen=True, slots=True)
class Rule:
    """A cross-field rule: `cel` is the x-kubernetes-validations rule the API server runs;
    `check` is the same rule in Python for standalone mode. Both are written side by side so a
    reviewer sees at once whether they say the same thing.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    """Where the API server reports the error (e.g. ``.protocol``); None: the object itself."""


@dataclass(frozen=True, slots=True)
class _Meta:
    doc: str
    json: str | None = None
    enum: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    list_map_keys: tuple[str, ...] | None = None
    preserve_unknown: bool = False
    rules: tuple[Rule, ...] = ()
    item_pattern: str | None = None
    item_rules: tuple[Rule, ...] = ()
    item_max_length: int = 253


def field(
    doc: str,
    *,
    default: Any = _MISSING,
    json: str | None = None,
    enum: tuple[str, ...] | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    min_items: int | None = None,
    max_items: int | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    item_pattern: str | None = None,
    item_max_length: int = 253,
    list_map_keys: tuple[str, ...] | None = None,
    preserve_unknown: bool = False,
    rules: tuple[Rule, ...] = (),
    item_rules: tuple[Rule, ...] = (),
) -> Any:
    """Declare one field. `doc` becomes the schema's description (kubectl explain shows it).

    A default that is a dataclass type means "an empty object whose own defaults apply", the way
    the API server defaults ``{}``. Lists default to an empty tuple when `default=()`.
    """
    meta = _Meta(
        doc=doc,
        json=json,
        enum=enum,
        minimum=minimum,
        maximum=maximum,
        min_items=min_items,
        max_items=max_items,
        min_length=min_length,
        max_length=max_length,
        pattern=pattern,
        item_pattern=item_pattern,
        list_map_keys=list_map_keys,
        preserve_unknown=preserve_unknown,
        rules=rules,
        item_rules=item_rules,
        item_max_length=item_max_length,
    )
    md = {"tsgw": meta}
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=md)
    if isinstance(default, dict):
        frozen = dict(default)
        return dataclasses.field(default_factory=lambda: dict(frozen), metadata=md)
    return dataclasses.field(default=default, metadata=md)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _json_name(f: dataclasses.Field[Any]) -> str:
    meta: _Meta = f.metadata["tsgw"]
    return meta.json or _camel(f.name)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = typing.get_type_hints(cls)
        _HINTS[cls] = h
    return h


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != len(typing.get_args(tp)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return tp, False


def _is_int_or_str(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and set(typing.get_args(tp)) == {int, str}


def _to_json(value: Any, *, stored: bool = False) -> Any:
    """`value` as JSON, fields in declaration order. Not `stored` (a schema's materialized
    default, which the API server validates as written, CEL rules included, without applying
    nested defaults first): None, empty lists and empty maps are left out. `stored`: see
    `to_json`."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_json(v, stored=stored) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v, stored=stored) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for attr, name, default in _stored_fields(type(value)):
            v = getattr(value, attr)
            if v is None:
                continue
            if (default is not _MISSING and v == default) if stored else (v == () or v == {}):
                continue
            out[name] = _to_json(v, stored=stored)
        return out
    return value


def to_json(value: Any) -> Any:
    """A typed value (e.g. a status class) as the JSON the API server stores for it: a field that
    is None is left out, and so is a field at the default the schema declares (the server fills
    it in again); everything else is written, empty lists included (they have no default, and an
    empty list replaces what was there). Fields come in declaration order."""
    return _to_json(value, stored=True)


def _declared_default(f: dataclasses.Field[Any], optional: bool) -> Any:
    """The default the schema declares for a field, which the API server fills in when the field
    is absent; _MISSING if none (optional fields, empty lists and maps have none)."""
    if optional or (f.default is _MISSING and f.default_factory is _MISSING):
        return _MISSING
    default = f.default if f.default is not _MISSING else typing.cast(Any, f.default_factory)()
    if (default != () and default != {}) or dataclasses.is_dataclass(default):
        return default
    return _MISSING


_STORED: dict[type, tuple[tuple[str, str, Any], ...]] = {}


def _stored_fields(cls: type) -> tuple[tuple[str, str, Any], ...]:
    """(attribute, json name, declared default or _MISSING) per field of `cls`, computed once."""
    plan = _STORED.get(cls)
    if plan is None:
        hints = _hints(cls)
        plan = _STORED[cls] = tuple(
            (f.name, _json_name(f), _declared_default(f, _unwrap_optional(hints[f.name])[1]))
            for f in dataclasses.fields(cls)
        )
    return plan


def _type_schema(tp: Any, meta: _Meta | None, *, item: bool = False) -> dict[str, Any]:
    s: dict[str, Any]
    if _is_int_or_str(tp):
        s = {"x-kubernetes-int-or-string": True}
    elif tp is str:
        s = {"type": "string"}
    elif tp is bool:
        s = {"type": "boolean"}
    elif tp is int:
        s = {"type": "integer", "format": "int32"}
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        s = {"type": "string", "enum": [m.value for m in tp]}
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        s = openapi(tp)
    elif typing.get_origin(tp) is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        items = _type_schema(inner, None, item=True)
        if meta is not None and inner is str:
            # Bounded strings keep the API server's CEL cost estimate within budget.
            items["maxLength"] = meta.item_max_length
        if meta is not None and meta.item_pattern:
            items["pattern"] = meta.item_pattern
        if meta is not None and meta.item_rules:
            items["x-kubernetes-validations"] = [_rule_json(r) for r in meta.item_rules]
        s = {"type": "array", "items": items}
        if meta is not None and meta.list_map_keys:
            s["x-kubernetes-list-type"] = "map"
            s["x-kubernetes-list-map-keys"] = list(meta.list_map_keys)
        elif inner in (str, int):
            s["x-kubernetes-list-type"] = "set"
        else:
            s["x-kubernetes-list-type"] = "atomic"
    elif typing.get_origin(tp) is dict:
        _k, v = typing.get_args(tp)
        s = {"type": "object", "additionalProperties": _type_schema(v, None, item=True)}
    elif tp is Any:
        s = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    else:  # pragma: no cover - a programming error in the type declarations
        raise TypeError(f"unsupported schema type {tp!r}")
    if meta is None or item:
        return s
    s = {"description": meta.doc, **{k: v for k, v in s.items() if k != "description"}}
    for key, value in (
        ("minimum", meta.minimum),
        ("maximum", meta.maximum),
        ("minItems", meta.min_items),
        ("maxItems", meta.max_items),
        ("minLength", meta.min_length),
        ("maxLength", meta.max_length),
        ("pattern", meta.pattern),
    ):
        if value is not None:
            s[key] = value
    if meta.enum is not None:
        s["enum"] = list(meta.enum)
    if meta.preserve_unknown:
        s["x-kubernetes-preserve-unknown-fields"] = True
    if meta.rules:
        s.setdefault("x-kubernetes-validations", []).extend(_rule_json(r) for r in meta.rules)
    return s


def _rule_json(r: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": r.cel, "message": r.message}
    if r.field_path is not None:
        out["fieldPath"] = r.field_path
    return out


def openapi(cls: type) -> dict[str, Any]:
    """The OpenAPI v3 schema of a dataclass declared with `field`, as a plain dict."""
    props: dict[str, Any] = {}
    required: list[str] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        meta: _Meta = f.metadata["tsgw"]
        tp, optional = _unwrap_optional(hints[f.name])
        s = _type_schema(tp, meta)
        default = _declared_default(f, optional)
        if default is not _MISSING:
            s["default"] = _to_json(default)
        has_default = f.default is not _MISSING or f.default_factory is not _MISSING
        if not has_default and not optional:
            required.append(_json_name(f))
        props[_json_name(f)] = s
    out: dict[str, Any] = {"type": "object"}
    doc = (cls.__doc__ or "").strip()
    if doc:
        out["description"] = " ".join(doc.split())
    out["properties"] = props
    if required:
        out["required"] = required
    rules: tuple[Rule, ...] = getattr(cls, "__rules__", ())
    if rules:
        out["x-kubernetes-validations"] = [_rule_json(r) for r in rules]
    return out


T = TypeVar("T")


def parse(cls: type[T], raw: Any, path: str = "spec") -> T:
    """Build the typed view `cls` from a JSON-decoded dict, applying the schema's defaults and
    checking what the API server checks (types, enums, bounds, patterns, CEL rules' twins).
    Raises ValidationError naming the first offending field's path.
    """
    return typing.cast(T, _parse(cls, raw, path))


def _fail(path: str, message: str) -> typing.NoReturn:
    raise ValidationError(path, message)


def _check_rules(rules: tuple[Rule, ...], value: Any, path: str) -> None:
    for r in rules:
        if not r.check(value):
            _fail(path + (r.field_path or ""), r.message)


Parser = Callable[[Any, str], Any]
_PARSERS: dict[tuple[Any, int], Parser] = {}


def _parse(tp: Any, raw: Any, path: str, meta: _Meta | None = None) -> Any:
    return _parser(tp, meta)(raw, path)


def _parser(tp: Any, meta: _Meta | None) -> Parser:
    """A parser for one (type, field declaration), built once: parsing is on the translation
    path, so the type dispatch happens here and not per value."""
    key = (tp, id(meta))
    p = _PARSERS.get(key)
    if p is None:
        p = _PARSERS[key] = _with_checks(_base_parser(tp, meta), meta)
    return p


def _base_parser(tp: Any, meta: _Meta | None) -> Parser:
    if _is_int_or_str(tp):

        def int_or_str(raw: Any, path: str) -> Any:
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                _fail(path, "must be an integer or a string")
            return raw

        return int_or_str
    if tp is str or tp is bool or tp is int:
        name = {str: "a string", bool: "a boolean", int: "an integer"}[tp]

        def scalar(raw: Any, path: str) -> Any:
            if type(raw) is not tp:
                _fail(path, f"must be {name}")
            return raw

        return scalar
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_tp: Any = tp

        def enum_value(raw: Any, path: str) -> Any:
            try:
                return enum_tp(raw)
            except ValueError:
                _fail(path, _unsupported(raw, [m.value for m in enum_tp]))

        return enum_value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        cls: type = tp
        return lambda raw, path: _parse_object(cls, raw, path)
    if typing.get_origin(tp) is tuple:
        return _list_parser(typing.get_args(tp)[0], meta)
    if typing.get_origin(tp) is dict:
        value_parser = _parser(typing.get_args(tp)[1], None)

        def mapping(raw: Any, path: str) -> Any:
            if not isinstance(raw, dict):
                _fail(path, "must be an object")
            return {str(k): value_parser(item, f"{path}.{k}") for k, item in sorted(raw.items())}

        return mapping
    if tp is Any:
        return lambda raw, path: raw
    raise TypeError(f"unsupported schema type {tp!r}")  # pragma: no cover


def _list_parser(inner: Any, meta: _Meta | None) -> Parser:
    item_parser = _parser(inner, None)
    max_len = meta.item_max_length if meta is not None else None
    pattern = _compiled(meta.item_pattern) if meta is not None and meta.item_pattern else None
    item_rules = meta.item_rules if meta is not None else ()
    map_keys = meta.list_map_keys if meta is not None else None
    is_set = inner in (str, int)

    def items(raw: Any, path: str) -> Any:
        if not isinstance(raw, list):
            _fail(path, "must be a list")
        out = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                if max_len is not None and len(item) > max_len:
                    _fail(f"{path}[{i}]", f"may not be more than {max_len} bytes")
                if pattern is not None and not pattern.fullmatch(item):
                    _fail(f"{path}[{i}]", f"should match {pattern.pattern!r}")
            parsed = item_parser(item, f"{path}[{i}]")
            if item_rules:
                _check_rules(item_rules, parsed, f"{path}[{i}]")
            out.append(parsed)
        if map_keys:
            seen: set[tuple[Any, ...]] = set()
            for i, item in enumerate(out):
                key = tuple(getattr(item, k) for k in map_keys)
                if key in seen:
                    _fail(f"{path}[{i}]", f"Duplicate value: {dict(zip(map_keys, key, strict=True))}")
                seen.add(key)
        elif is_set and len(set(out)) != len(out):
            _fail(path, "Duplicate value")
        return tuple(out)

    return items


def _with_checks(base: Parser, meta: _Meta | None) -> Parser:
    if meta is None:
        return base
    checks = _bound_checks(meta)
    rules = meta.rules
    if not checks and not rules:
        return base

    def checked(raw: Any, path: str) -> Any:
        value = base(raw, path)
        for check in checks:
            check(value, path)
        if rules:
            _check_rules(rules, value, path)
        return value

    return checked


def _bound_checks(meta: _Meta) -> tuple[Callable[[Any, str], None], ...]:
    """Only the checks this field declares, each a small closure, decided once per field: the
    parser runs them for every value of every object translated."""
    out: list[Callable[[Any, str], None]] = []
    if meta.enum is not None:
        allowed = meta.enum

        def enum(value: Any, path: str) -> None:
            if value not in allowed:
                _fail(path, _unsupported(value, list(allowed)))

        out.append(enum)
    if meta.minimum is not None or meta.maximum is not None:
        lo, hi = meta.minimum, meta.maximum

        def bounds(value: Any, path: str) -> None:
            if isinstance(value, int) and not isinstance(value, bool):
                if lo is not None and value < lo:
                    _fail(path, f"should be greater than or equal to {lo}")
                if hi is not None and value > hi:
                    _fail(path, f"should be less than or equal to {hi}")

        out.append(bounds)
    if meta.min_items is not None or meta.max_items is not None:
        min_items, max_items = meta.min_items, meta.max_items

        def items(value: Any, path: str) -> None:
            if isinstance(value, tuple):
                if min_items is not None and len(value) < min_items:
                    _fail(path, f"should have at least {min_items} items")
                if max_items is not None and len(value) > max_items:
                    _fail(path, f"must have at most {max_items} items")

        out.append(items)
    if meta.min_length is not None or meta.max_length is not None or meta.pattern is not None:
        min_len, max_len = meta.min_length, meta.max_length
        pattern = _compiled(meta.pattern) if meta.pattern is not None else None

        def text(value: Any, path: str) -> None:
            if isinstance(value, str):
                if min_len is not None and len(value) < min_len:
                    _fail(path, f"should be at least {min_len} chars long")
                if max_len is not None and len(value) > max_len:
                    _fail(path, f"may not be more than {max_len} bytes")
                if pattern is not None and not pattern.fullmatch(value):
                    _fail(path, f"should match {pattern.pattern!r}")

        out.append(text)
    return tuple(out)


def _unsupported(value: Any, allowed: list[str]) -> str:
    """The API server's wording, so a message reads the same in standalone mode."""
    return f'Unsupported value: "{value}": supported values: ' + ", ".join(f'"{v}"' for v in allowed)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    attr: str
    json: str
    tp: Any
    meta: _Meta
    parser: Parser
    required: bool
    default: Any
    factory: Any


_PLANS: dict[type, tuple[tuple[_FieldPlan, ...], frozenset[str]]] = {}


def _plan(cls: type) -> tuple[tuple[_FieldPlan, ...], frozenset[str]]:
    """Per-class field plan, computed once: parsing is on the translation path."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = _hints(cls)
        fields = []
        for f in dataclasses.fields(cls):
            tp, _optional = _unwrap_optional(hints[f.name])
            fields.append(
                _FieldPlan(
                    f.name,
                    _json_name(f),
                    tp,
                    f.metadata["tsgw"],
                    _parser(tp, f.metadata["tsgw"]),
                    f.default is _MISSING and f.default_factory is _MISSING,
                    f.default,
                    f.default_factory,
                )
            )
        plan = _PLANS[cls] = (tuple(fields), frozenset(p.json for p in fields))
    return plan


_DEFAULTS: dict[int, Any] = {}


def _factory_default(f: _FieldPlan, path: str) -> Any:
    """A field's default from its factory. The API server defaults an absent object to `{}` and
    then applies the nested defaults: so does this. Parsed objects are frozen, so a parsed
    nested default is built once per field and shared."""
    shared = _DEFAULTS.get(id(f))
    if shared is not None:
        return shared
    default = f.factory()
    if dataclasses.is_dataclass(default):
        default = _DEFAULTS[id(f)] = _parse_object(type(default), {}, f"{path}.{f.json}")
    return default


def _parse_object(cls: type, raw: Any, path: str) -> Any:
    if type(raw) is not dict and not isinstance(raw, Mapping):
        _fail(path, "must be an object")
    fields, known = _plan(cls)
    if not known.issuperset(raw):
        key = next(k for k in raw if k not in known)
        # kubectl's default (server-side strict field validation) rejects these too.
        _fail(f"{path}.{key}", f'unknown field "{key}"')
    kwargs: dict[str, Any] = {}
    for f in fields:
        value = raw.get(f.json)
        if value is not None:
            kwargs[f.attr] = f.parser(value, f"{path}.{f.json}")
        elif f.required:
            _fail(f"{path}.{f.json}", "Required value")
        elif f.factory is not _MISSING:
            kwargs[f.attr] = _factory_default(f, path)
    obj = cls(**kwargs)
    rules: tuple[Rule, ...] = getattr(cls, "__rules__", ())
    if rules:
        _check_rules(rules, obj, path)
    return obj
