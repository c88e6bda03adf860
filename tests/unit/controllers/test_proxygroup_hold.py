"""The proxy-group controller holds a StatefulSet (or its scale-up) until each replica's config
Secret carries its auth key, so no proxy pod mounts a config without one (the key would reach the
mounted file only with the kubelet's next Secret sync). Unit level: the decision on plain
objects; tests/integration/operator covers it against a real kube-apiserver."""

from __future__ import annotations

import base64
import json
from typing import Any

from tsgw.controllers import ProxyGroupReconciler

NS = "apps"


class _Store:
    def __init__(self, objs: dict[str, dict[str, Any]]) -> None:
        self.objs = objs

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self.objs.get(key[1]) if key[0] == NS else None


class _Informer:
    def __init__(self, objs: dict[str, dict[str, Any]]) -> None:
        self.store = _Store(objs)


def _reconciler(live_sts: dict[str, Any] | None, states: dict[str, dict[str, str]]) -> ProxyGroupReconciler:
    r = object.__new__(ProxyGroupReconciler)
    secrets = {
        name: {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        for name, data in states.items()
    }
    r.owned = {  # type: ignore[assignment]
        "Secret": _Informer(secrets),
        "StatefulSet": _Informer({"db-tsep": live_sts} if live_sts is not None else {}),
    }
    return r


def _sts(replicas: int) -> dict[str, Any]:
    return {"kind": "StatefulSet", "metadata": {"name": "db-tsep"}, "spec": {"replicas": replicas, "x": 1}}


def _config(pod: str, key: str) -> dict[str, Any]:
    conf: dict[str, Any] = {"Version": "alpha0", "Hostname": pod}
    if key:
        conf["AuthKey"] = key
    return {
        "kind": "Secret",
        "metadata": {"name": f"{pod}-config"},
        "stringData": {"cap-95.hujson": json.dumps(conf)},
    }


def test_no_statefulset_until_every_replica_config_has_its_key() -> None:
    sts = _sts(2)
    want = [_config("db-tsep-0", "k0"), _config("db-tsep-1", ""), sts]
    assert _reconciler(None, {})._held(sts, want, NS) is None
    want = [_config("db-tsep-0", "k0"), _config("db-tsep-1", "k1"), sts]
    assert _reconciler(None, {})._held(sts, want, NS) is sts


def test_a_registered_device_needs_no_key_restarts_and_reissues() -> None:
    sts = _sts(2)
    want = [_config("db-tsep-0", ""), _config("db-tsep-1", ""), sts]
    registered = {"db-tsep-0": {"device_id": "n1"}, "db-tsep-1": {"device_id": "n2"}}
    assert _reconciler(None, registered)._held(sts, want, NS) is sts
    assert _reconciler(None, {"db-tsep-0": {"device_id": "n1"}})._held(sts, want, NS) is None


def test_a_scale_up_adds_only_keyed_replicas_and_never_scales_down_what_runs() -> None:
    sts = _sts(4)
    want = [
        _config("db-tsep-0", ""),
        _config("db-tsep-1", ""),
        _config("db-tsep-2", "k2"),
        _config("db-tsep-3", ""),
        sts,
    ]
    states = {"db-tsep-0": {"device_id": "n0"}, "db-tsep-1": {"device_id": "n1"}}
    held = _reconciler(_sts(2), states)._held(sts, want, NS)
    assert held is not None
    assert held["spec"] == {"replicas": 3, "x": 1}  # 0, 1 registered; 2 keyed; 3 not yet
    assert sts["spec"]["replicas"] == 4  # the desired object is not changed
    # Nothing keyed beyond what runs: the running count stays, other changes still apply.
    held = _reconciler(_sts(2), {})._held(sts, want, NS)
    assert held is not None
    assert held["spec"]["replicas"] == 2


def test_a_scale_down_is_not_held() -> None:
    sts = _sts(1)
    want = [_config("db-tsep-0", ""), sts]
    held = _reconciler(_sts(3), {})._held(sts, want, NS)
    assert held is not None
    assert held["spec"]["replicas"] == 1
