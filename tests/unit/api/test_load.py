"""Typed views: defaults applied as the API server applies them, invalid objects rejected with
the message the API server gives (the same examples run against the real API server in
tests/integration/api)."""

import pathlib

import pytest
import yaml

from tsgw.api import EgressProtocol, ValidationError, load, parse_duration

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"
VALID = sorted(EXAMPLES.glob("*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))


def expected_message(path: pathlib.Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    return first.removeprefix("# expect: ")


def test_there_is_an_example_of_every_kind() -> None:
    # (TailscaleRoutePolicy has two: on tsgw's own kinds, and on a Gateway API route.)
    kinds = sorted({yaml.safe_load(p.read_text())["kind"] for p in VALID})
    assert kinds == sorted(
        [
            "TailscaleTailnet",
            "TailscaleEndpoints",
            "TailscaleServices",
            "TailscaleGateway",
            "TailscaleRoutePolicy",
        ]
    )


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_each_example_loads(path: pathlib.Path) -> None:
    obj = load(yaml.safe_load(path.read_text()))
    assert obj.metadata.name


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_each_invalid_example_is_rejected_with_its_message(path: pathlib.Path) -> None:
    with pytest.raises(ValidationError) as exc:
        load(yaml.safe_load(path.read_text()))
    assert expected_message(path) in str(exc.value)


def test_defaults_are_applied_like_the_api_server_does() -> None:
    obj = load(
        {
            "apiVersion": "gateway.tailscale.com/v1alpha1",
            "kind": "TailscaleEndpoints",
            "metadata": {"name": "x", "namespace": "n"},
            "spec": {
                "tailnetRef": {"name": "t"},
                "targets": [{"name": "a", "address": "100.64.0.1", "ports": [{"port": 80}]}],
            },
        }
    )
    target = obj.spec.targets[0]
    assert (target.weight, target.priority, target.ports[0].protocol) == (1, 0, EgressProtocol.TCP)
    assert obj.spec.proxy.replicas == 2
    assert (obj.spec.failover.consecutive_failures, obj.spec.failover.retries) == (3, 1)


def test_a_duplicate_list_map_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="Duplicate value"):
        load(
            {
                "apiVersion": "gateway.tailscale.com/v1alpha1",
                "kind": "TailscaleEndpoints",
                "metadata": {"name": "x", "namespace": "n"},
                "spec": {
                    "tailnetRef": {"name": "t"},
                    "targets": [
                        {"name": "a", "address": "100.64.0.1", "ports": [{"port": 80}]},
                        {"name": "a", "address": "100.64.0.2", "ports": [{"port": 80}]},
                    ],
                },
            }
        )


def test_durations_read_like_go_durations() -> None:
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("250ms") == 0.25


def _keys_are_strings(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _keys_are_strings(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_keys_are_strings(v) for v in value)
    return True


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_examples_have_no_yaml_1_1_key_traps(path: pathlib.Path) -> None:
    # A key such as `on:` or `yes:` is a boolean in YAML 1.1; kubectl would turn it into "true".
    assert _keys_are_strings(yaml.safe_load(path.read_text()))


def test_an_unknown_field_is_rejected_as_kubectl_strict_validation_does() -> None:
    with pytest.raises(ValidationError, match=r'spec\.retries\.on: unknown field "on"'):
        load(
            {
                "apiVersion": "gateway.tailscale.com/v1alpha1",
                "kind": "TailscaleRoutePolicy",
                "metadata": {"name": "p", "namespace": "n"},
                "spec": {
                    "targetRefs": [{"kind": "TailscaleServices", "name": "w"}],
                    "retries": {"on": ["5xx"]},
                },
            }
        )


@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        ({"name": "web\x01", "namespace": "apps"}, "metadata.name"),
        ({"name": "Web", "namespace": "apps"}, "metadata.name"),
        ({"name": "w" * 254, "namespace": "apps"}, "metadata.name"),
        ({"name": "web", "namespace": "apps.x"}, "metadata.namespace"),
    ],
)
def test_names_are_checked_as_the_api_server_checks_them(metadata: dict[str, str], path: str) -> None:
    obj = yaml.safe_load((EXAMPLES / "tailscaleservices.yaml").read_text())
    obj["metadata"] = metadata
    with pytest.raises(ValidationError) as exc:
        load(obj)
    assert exc.value.path == path
    assert "Invalid value" in exc.value.message
    assert len(exc.value.message) < 400  # a long name is cut short in the message


def _policy(spec: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "gateway.tailscale.com/v1alpha1",
        "kind": "TailscaleRoutePolicy",
        "metadata": {"name": "p", "namespace": "apps"},
        "spec": {"targetRefs": [{"kind": "TailscaleServices", "name": "web"}], **spec},
    }


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"requestHeaders": {"set": [{"name": "HOST", "value": "x"}]}}, "set[0]", "host header"),
        ({"requestHeaders": {"add": [{"name": "host", "value": "x"}]}}, "add[0]", "host header"),
        ({"requestHeaders": {"remove": ["Host"]}}, "remove[0]", "host header"),
        ({"requestHeaders": {"set": [{"name": "x", "value": "a\nb"}]}}, "set[0].value", "CR, LF or NUL"),
        ({"requestHeaders": {"add": [{"name": "x", "value": "a\x00"}]}}, "add[0].value", "CR, LF or NUL"),
        ({"requestHeaders": {"add": [{"name": "x", "value": "a\rb"}]}}, "add[0].value", "CR, LF or NUL"),
        ({"timeout": "25h"}, "spec.timeout", "at most 24h"),
        ({"timeout": "9" * 30 + "h"}, "spec.timeout", "at most 24h"),
        ({"timeout": "9" * 40 + "h"}, "spec.timeout", "may not be more than 32"),
        ({"retries": {"perTryTimeout": "1441m"}}, "perTryTimeout", "at most 24h"),
    ],
)
def test_values_envoy_would_refuse_are_refused(spec: dict[str, object], path: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        load(_policy(spec))
    assert path in exc.value.path
    assert message in exc.value.message


def test_values_envoy_accepts_still_load() -> None:
    obj = load(
        _policy(
            {
                "requestHeaders": {
                    "set": [{"name": "x-host", "value": "a\tb"}],
                    "remove": ["x-forwarded-host"],
                },
                "timeout": "24h",
                "retries": {"perTryTimeout": "0s"},
            }
        )
    )
    assert obj.spec.timeout == "24h"


@pytest.mark.parametrize(
    ("field", "value"), [("interval", "0s"), ("ejectionTime", "0ms"), ("interval", "25h")]
)
def test_failover_durations_are_bounded(field: str, value: str) -> None:
    obj = yaml.safe_load((EXAMPLES / "tailscaleendpoints.yaml").read_text())
    obj["spec"]["failover"] = {field: value}
    with pytest.raises(ValidationError) as exc:
        load(obj)
    assert exc.value.path == f"spec.failover.{field}"
