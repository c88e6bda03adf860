"""The proxy-group controller writes a group's objects in three concurrent waves: the replicas'
state Secrets and the Role (the auth-key controller mints meanwhile; a RoleBinding is refused
before its Role exists), every other object, the StatefulSet
last. Unit level: the order on plain objects and the error behaviour of a wave;
tests/integration/operator and the bed apply real groups."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tsgw.controllers._proxygroup import _all, _waves


def _obj(kind: str, name: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name}}


WANT = [
    _obj("ServiceAccount", "db-tsep"),
    _obj("Role", "db-tsep"),
    _obj("RoleBinding", "db-tsep"),
    _obj("Secret", "db-tsep-0"),
    _obj("Secret", "db-tsep-0-config"),
    _obj("Secret", "db-tsep-1"),
    _obj("Secret", "db-tsep-1-config"),
    _obj("ConfigMap", "db-tsep-bootstrap"),
    _obj("Service", "db"),
    _obj("StatefulSet", "db-tsep"),
]


def _names(waves: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [[f"{o['kind']}/{o['metadata']['name']}" for o in w] for w in waves]


def test_state_secrets_and_the_role_first_the_statefulset_last_the_rest_between_in_order() -> None:
    assert _names(_waves(WANT, {"db-tsep-0", "db-tsep-1"})) == [
        ["Role/db-tsep", "Secret/db-tsep-0", "Secret/db-tsep-1"],  # a binding needs its Role
        [
            "ServiceAccount/db-tsep",
            "RoleBinding/db-tsep",
            "Secret/db-tsep-0-config",
            "Secret/db-tsep-1-config",
            "ConfigMap/db-tsep-bootstrap",
            "Service/db",
        ],
        ["StatefulSet/db-tsep"],
    ]


def test_empty_waves_are_left_out() -> None:
    assert _names(_waves([_obj("Service", "db")], set())) == [["Service/db"]]
    assert _waves([], set()) == []


@pytest.mark.anyio
async def test_a_wave_runs_concurrently_and_every_write_ends_before_the_first_error_is_raised() -> None:
    done: list[str] = []
    running = 0
    most = 0

    async def write(obj: dict[str, Any]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.01)
        running -= 1
        if obj["metadata"]["name"] == "db-tsep-0-config":
            raise ValueError("refused")
        done.append(obj["metadata"]["name"])

    wave = _waves(WANT, {"db-tsep-0", "db-tsep-1"})[1]
    with pytest.raises(ValueError, match="refused"):  # a plain exception, not a group
        await _all(write, wave)
    assert most == len(wave)
    assert len(done) == len(wave) - 1
