"""A Translator reuses per-object results: after any change its output equals a fresh
translation, and `changed` names exactly the groups whose output moved."""

from __future__ import annotations

import copy
import dataclasses

from tests.unit.translate._cases import load_case, render
from tsgw.translate import Inputs, Translator, translate


def _with_objects(inputs: Inputs, objects: list[dict[str, object]]) -> Inputs:
    return dataclasses.replace(inputs, objects=objects)


def test_a_second_translation_of_the_same_input_changes_nothing() -> None:
    inputs = load_case("examples")
    t = Translator()
    first = t.translate(inputs)
    assert first.changed == frozenset(first.xds)
    again = t.translate(inputs)
    assert again.changed == frozenset()
    assert render(again) == render(first)


def test_changing_one_object_rebuilds_only_its_group_and_matches_a_fresh_translation() -> None:
    inputs = load_case("services_http_rules")
    extra = copy.deepcopy(next(o for o in inputs.objects if o["kind"] == "TailscaleServices"))
    extra["metadata"]["name"] = "other"
    objects = [*inputs.objects, extra]
    t = Translator()
    t.translate(_with_objects(inputs, objects))
    changed = copy.deepcopy(extra)
    changed["spec"]["backends"][0]["weight"] = 5
    objects = [o for o in objects if o is not extra] + [changed]
    result = t.translate(_with_objects(inputs, objects))
    assert result.changed == {("apps", "other-tssvc")}
    assert render(result) == render(translate(_with_objects(inputs, objects)))


def test_a_removed_object_is_reported_changed_and_its_group_disappears() -> None:
    inputs = load_case("errors_are_values")
    t = Translator()
    t.translate(inputs)
    kept = [o for o in inputs.objects if o["metadata"]["name"] != "good"]
    result = t.translate(_with_objects(inputs, kept))
    assert ("apps", "good-tsep") in result.changed
    assert ("apps", "good-tsep") not in result.xds
    assert render(result) == render(translate(_with_objects(inputs, kept)))


def test_a_changed_endpoint_slice_rebuilds_the_ingress_that_reads_it() -> None:
    inputs = load_case("services_tcp")
    t = Translator()
    t.translate(inputs)
    slices = copy.deepcopy(list(inputs.endpoint_slices))
    slices[0]["endpoints"].append({"addresses": ["10.244.0.99"]})
    step = dataclasses.replace(inputs, endpoint_slices=slices)
    result = t.translate(step)
    assert result.changed == {("apps", "db-tssvc")}
    assert "10.244.0.99" in render(result)
    assert render(result) == render(translate(step))


def test_translation_pauses_the_garbage_collector_and_restores_its_previous_state() -> None:
    import gc

    inputs = load_case("examples")
    seen: list[bool] = []

    class Spy(Translator):
        def _translate(self, inputs: Inputs):  # type: ignore[no-untyped-def]
            seen.append(gc.isenabled())
            return super()._translate(inputs)

    assert gc.isenabled()
    Spy().translate(inputs)
    assert gc.isenabled()  # resumed
    gc.disable()
    try:
        Spy().translate(inputs)
        assert not gc.isenabled()  # a caller's choice to keep it off is kept
    finally:
        gc.enable()
    assert seen == [False, False]
