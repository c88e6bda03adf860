"""Golden tests: each case's input YAML → model → xDS JSON and owned objects, compared with the
committed golden file (TSGW_UPDATE_GOLDEN=1 rewrites them; review the diff)."""

from __future__ import annotations

import os

import pytest

from tests.unit.translate._cases import GOLDEN, case_names, load_case, render
from tsgw.translate import translate


@pytest.mark.parametrize("case", case_names())
def test_translation_matches_the_golden_file(case: str) -> None:
    text = render(translate(load_case(case)))
    path = GOLDEN / f"{case}.json"
    if os.environ.get("TSGW_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with TSGW_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{case}: output changed; if intended, rerun with TSGW_UPDATE_GOLDEN=1"


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(case_names())
