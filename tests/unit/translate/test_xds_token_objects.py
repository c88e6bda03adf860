"""With an xDS key, each group's Envoy bootstrap carries that group's token and lives in a
Secret only the group's pods mount; without one, nothing changes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tests.unit.translate._cases import load_case
from tsgw.translate import Options, translate
from tsgw.xds import group_token

KEY = b"k" * 32


def _objects(options: Options) -> dict[tuple[str, str], list[dict[str, Any]]]:
    result = translate(load_case("examples"), options)
    return {k: result.objects[k] for k in result.xds}


def _named(objs: list[dict[str, Any]], kind: str, suffix: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]


def test_each_groups_bootstrap_is_a_secret_with_its_own_token() -> None:
    groups = _objects(dataclasses.replace(Options(), xds_auth_key=KEY))
    assert len(groups) >= 2
    tokens = set()
    for (ns, name), objs in groups.items():
        assert _named(objs, "ConfigMap", "-envoy") == []
        (secret,) = _named(objs, "Secret", f"{name}-envoy")
        boot = json.loads(secret["stringData"]["envoy.json"])
        (svc,) = boot["dynamic_resources"]["ads_config"]["grpc_services"]
        (header,) = svc["initial_metadata"]
        assert header == {"key": "authorization", "value": f"Bearer {group_token(KEY, f'{name}.{ns}')}"}
        tokens.add(header["value"])
        (sts,) = [o for o in objs if o["kind"] == "StatefulSet"]
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        assert volumes["envoy-bootstrap"] == {
            "name": "envoy-bootstrap",
            "secret": {"secretName": f"{name}-envoy"},
        }
    assert len(tokens) == len(groups)


def test_without_a_key_the_bootstrap_stays_a_shared_configmap_without_a_token() -> None:
    for (_, name), objs in _objects(Options()).items():
        (cm,) = _named(objs, "ConfigMap", f"{name}-envoy")
        assert "initial_metadata" not in cm["data"]["envoy.json"]
        assert _named(objs, "Secret", f"{name}-envoy") == []


def test_the_key_never_shows_in_the_options_repr() -> None:
    assert "kkkk" not in repr(dataclasses.replace(Options(), xds_auth_key=KEY))
