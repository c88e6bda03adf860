"""Keys reach configs by namespace and pod name: groups of one name in two namespaces have
replicas of one name, and one's key must never be written into the other's config."""

from __future__ import annotations

import base64

from tsgw.controllers import AUTHKEY_FIELD, auth_keys_from_secrets


def _state(ns: str, name: str, key: str) -> dict[str, object]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "data": {AUTHKEY_FIELD: base64.b64encode(key.encode()).decode()},
    }


def test_keys_are_told_apart_by_namespace() -> None:
    keys = auth_keys_from_secrets([_state("a", "db-tsep-0", "ka"), _state("b", "db-tsep-0", "kb")])
    assert keys == {"a/db-tsep-0": "ka", "b/db-tsep-0": "kb"}
