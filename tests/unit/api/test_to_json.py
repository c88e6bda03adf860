"""api.to_json writes a typed status as the API server stores it: nothing the server would fill
in again, and every empty list (it replaces the old value)."""

from tsgw import api


def test_none_and_declared_defaults_are_left_out_and_empty_lists_written() -> None:
    status = api.EndpointsStatus(
        service_name="db",
        targets=(api.TargetStatus(name="a"), api.TargetStatus(name="b", addresses=("1.2.3.4",))),
    )
    assert api.to_json(status) == {
        "conditions": [],
        "serviceName": "db",
        "targets": [{"name": "a", "addresses": []}, {"name": "b", "addresses": ["1.2.3.4"]}],
    }
    assert api.to_json(api.ServicesStatus()) == {"conditions": [], "addresses": []}


def test_a_value_other_than_the_default_is_written_in_declaration_order() -> None:
    cond = api.Condition(
        type="Ready",
        status="True",
        reason="Hosted",
        message="",
        last_transition_time="t",
        observed_generation=0,
    )
    assert list(api.to_json(cond)) == [
        "type",
        "status",
        "reason",
        "message",
        "observedGeneration",
        "lastTransitionTime",
    ]
    assert api.to_json(api.Proxy()) == {"tags": [], "nodeSelector": {}, "tolerations": []}
    assert api.to_json(api.Proxy(replicas=3))["replicas"] == 3
