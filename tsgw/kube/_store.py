"""The informer's cache: objects by ``namespace/name`` plus named indexes.

Every mutation is synchronous (no ``await``), so on one event loop a reader never sees a half
applied change; that is the whole concurrency story of client-go's ThreadSafeStore here.

Indexers map an object to index values; ``namespace`` and ``owner`` (the UIDs of its owner
references) are always present, others are added by name.

**Cached objects are read-only.** Every reader (handlers, reconcilers, two controllers sharing an
informer) gets the one cached object, so an in-place change (``add_finalizer(store.get(k), f)``
followed by a failed write) would leave the cache claiming what the server never stored.
controller-runtime's cache reader deep-copies on every read; a deep copy costs 130–210 µs per
5 KB object here (controllers.md §1.7), on every read of every reconcile. Instead the store
*freezes* an object once, when it is cached: its dicts and lists become :class:`FrozenDict` and
:class:`FrozenList`, subclasses of ``dict`` and ``list`` that read (and ``isinstance``, compare,
spread, JSON-encode) exactly like them but raise ``TypeError`` on any change. Freezing is paid
once per object version (~2.5× the cost of parsing it), reads cost nothing. To change an object,
take :func:`deep_copy` (or ``copy.deepcopy``): an ordinary, mutable dict.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

import orjson

from tsgw.kube._resources import ObjectKey, RawObject, object_key

__all__ = [
    "INDEX_NAMESPACE",
    "INDEX_OWNER",
    "FrozenDict",
    "FrozenList",
    "IndexFunc",
    "Store",
    "deep_copy",
    "freeze",
]


def _read_only(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError("a cached object is read-only: change a deep_copy() of it")


class FrozenDict(dict[str, Any]):
    """A ``dict`` of a cached object: reads as one, refuses every change."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: object) -> dict[str, Any]:
        return deep_copy(self)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


class FrozenList(list[Any]):
    """A ``list`` of a cached object: reads as one, refuses every change."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: object) -> list[Any]:
        return orjson.loads(orjson.dumps(self))  # type: ignore[no-any-return]

    def __reduce__(self) -> Any:
        return (list, (list(self),))


def _freeze_value(value: Any) -> Any:
    t = type(value)
    if t is dict:
        return _freeze_dict(value)
    if t is list:
        return FrozenList([_freeze_value(v) if type(v) in (dict, list) else v for v in value])
    return value


def _freeze_dict(obj: dict[str, Any]) -> FrozenDict:
    for k, v in obj.items():
        t = type(v)
        if t is dict or t is list:
            obj[k] = _freeze_value(v)  # replacing a value of an existing key: no resize
    return FrozenDict(obj)


def freeze(obj: RawObject) -> RawObject:
    """``obj`` as a read-only object (the dicts inside ``obj`` are reused: do not keep using it)."""
    if type(obj) is FrozenDict:
        return obj
    return _freeze_dict(obj)


def deep_copy(obj: RawObject) -> RawObject:
    """A mutable deep copy of ``obj`` (of a cached object, or any JSON object)."""
    result: RawObject = orjson.loads(orjson.dumps(obj))
    return result


IndexFunc = Callable[[RawObject], Iterable[str]]
INDEX_NAMESPACE = "namespace"
INDEX_OWNER = "owner"


def _by_namespace(obj: RawObject) -> Iterable[str]:
    return ((obj.get("metadata") or {}).get("namespace") or "",)


def _by_owner(obj: RawObject) -> Iterable[str]:
    return [ref["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or () if "uid" in ref]


class Store:
    """Objects keyed by :class:`ObjectKey`, with indexes kept in step on every change."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[ObjectKey, RawObject] = {}
        self._indexers: dict[str, IndexFunc] = {INDEX_NAMESPACE: _by_namespace, INDEX_OWNER: _by_owner}
        self._indexers.update(indexers or {})
        self._indices: dict[str, dict[str, set[ObjectKey]]] = {n: {} for n in self._indexers}

    def add_indexer(self, name: str, func: IndexFunc) -> None:
        """Add an index (existing objects are indexed at once)."""
        self._indexers[name] = func
        index: dict[str, set[ObjectKey]] = {}
        for key, obj in self._items.items():
            for value in func(obj):
                index.setdefault(value, set()).add(key)
        self._indices[name] = index

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: ObjectKey | tuple[str, str]) -> RawObject | None:
        return self._items.get(ObjectKey(*key))

    def list(self, namespace: str | None = None) -> list[RawObject]:
        if namespace is None:
            return list(self._items.values())
        return self.by_index(INDEX_NAMESPACE, namespace)

    def keys(self) -> builtins.list[ObjectKey]:
        return list(self._items)

    def by_index(self, name: str, value: str) -> builtins.list[RawObject]:
        return [self._items[k] for k in self._indices[name].get(value, ())]

    def index_keys(self, name: str, value: str) -> builtins.list[ObjectKey]:
        return list(self._indices[name].get(value, ()))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[RawObject]:
        return iter(list(self._items.values()))

    # -- writes (synchronous by design) ------------------------------------------------------

    def upsert(self, obj: RawObject) -> RawObject | None:
        """Add or replace ``obj`` (frozen, see :func:`freeze`); returns the previous version."""
        obj = freeze(obj)
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, obj)
        return old

    def delete(self, key: ObjectKey) -> RawObject | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objs: Iterable[RawObject]) -> None:
        """Swap the whole content at once (after a LIST); objects are frozen as they are stored."""
        self._items = {object_key(o): o for o in map(freeze, objs)}
        self._indices = {n: {} for n in self._indexers}
        for key, obj in self._items.items():
            self._index(key, obj)

    def _index(self, key: ObjectKey, obj: RawObject) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            for value in func(obj):
                index.setdefault(value, set()).add(key)

    def _unindex(self, key: ObjectKey, obj: RawObject) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
