"""The fast send path's start-up check: it passes with the grpclib and h2 that uv.lock installs
(and pyproject.toml bounds), and names what is missing when a name it uses is gone."""

from __future__ import annotations

import grpclib.protocol
import h2.connection
import pytest

from tsgw.xds import _fastsend


def test_the_installed_grpclib_and_h2_have_everything_the_fast_path_uses() -> None:
    assert _fastsend._probe() is None


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (grpclib.protocol.Connection, "data_send_process"),
        (h2.connection.H2Connection, "_get_stream_by_id"),
    ],
)
def test_a_missing_name_turns_the_fast_path_off_and_is_named(
    monkeypatch: pytest.MonkeyPatch, cls: type, name: str
) -> None:
    monkeypatch.delattr(cls, name)
    problem = _fastsend._probe()
    assert problem is not None
    assert repr(name) in problem
