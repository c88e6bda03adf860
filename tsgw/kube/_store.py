"""The informer's cache: objects by ``namespace/name`` plus named indexes.

Every mutation is synchronous (no ``await``), so on one event loop a reader never sees a half
applied change; that is the whole concurrency story of client-go's ThreadSafeStore here.

Indexers map an object to index values; ``namespace`` and ``owner`` (the UIDs of its owner
references) are always present, others are added by name. Objects are the stored dicts
themselves: treat them as read-only (copy before you change one).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator

from tsgw.kube._resources import ObjectKey, RawObject, object_key

__all__ = ["INDEX_NAMESPACE", "INDEX_OWNER", "IndexFunc", "Store"]

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
        """Add or replace ``obj``; returns the previous version."""
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
        """Swap the whole content at once (after a LIST)."""
        self._items = {object_key(o): o for o in objs}
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
