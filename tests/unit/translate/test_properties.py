"""Properties of the translation: any schema-valid input gives a consistent xDS snapshot per
proxy group and conditions for every object, never an exception; the same input gives
byte-identical output."""

from __future__ import annotations

import random

import yaml
from hypothesis import HealthCheck, given, settings

from tests.unit.translate._cases import CASES, case_names, inputs_from, load_case, render
from tests.unit.translate._strategies import api_objects
from tsgw.translate import Inputs, translate
from tsgw.xds import Snapshot


def _context_docs() -> list[dict[str, object]]:
    docs = list(yaml.safe_load_all((CASES / "_tailnet.yaml").read_text()))
    for name in ("services_tcp", "services_http_rules", "gateway"):
        docs.extend(
            d
            for d in yaml.safe_load_all((CASES / f"{name}.yaml").read_text())
            if d["kind"] != "TailscaleServices" and d["kind"] != "TailscaleGateway"
        )
    return docs


CONTEXT = _context_docs()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(api_objects())
def test_any_schema_valid_input_yields_consistent_snapshots_and_conditions(
    objects: list[dict[str, object]],
) -> None:
    inputs = inputs_from([*CONTEXT, *objects])
    result = translate(inputs)
    for (ns, name), resources in result.xds.items():
        Snapshot(resources.by_type(), version=f"{ns}/{name}")  # raises when inconsistent
        group = result.model.group(ns, name)
        assert group is not None
        assert len(result.objects[(ns, name)]) >= 6
    statused = {(s.ref.kind, s.ref.namespace, s.ref.name) for s in result.model.statuses}
    for obj in objects:
        md = obj["metadata"]
        assert isinstance(md, dict)
        assert (obj["kind"], md.get("namespace", ""), md["name"]) in statused


def test_the_same_input_gives_byte_identical_output() -> None:
    for case in case_names():
        first = render(translate(load_case(case)))
        assert render(translate(load_case(case))) == first, case


def test_input_order_does_not_change_the_output() -> None:
    for case in case_names():
        inputs = load_case(case)
        shuffled = [
            list(x) for x in (inputs.objects, inputs.services, inputs.endpoint_slices, inputs.gateways)
        ]
        rng = random.Random(case)
        for lst in shuffled:
            rng.shuffle(lst)
        other = Inputs(
            objects=shuffled[0],
            services=shuffled[1],
            endpoint_slices=shuffled[2],
            gateways=shuffled[3],
            tailnets=inputs.tailnets,
        )
        assert render(translate(other)) == render(translate(inputs)), case


def test_xds_bytes_are_identical_across_translations() -> None:
    a = translate(load_case("examples"))
    b = translate(load_case("examples"))
    for key, res in a.xds.items():
        assert [m.SerializeToString(deterministic=True) for m in res] == [
            m.SerializeToString(deterministic=True) for m in b.xds[key]
        ]
