"""The device key expiry series: tagged devices with an expiry only, gone devices dropped."""

from datetime import UTC, datetime

from prometheus_client import REGISTRY

from tsgw.controllers._metrics import observe_device_expiry
from tsgw.tailscale import Device

NAME = "tsgw_tailnet_device_key_expiry_timestamp_seconds"
WHEN = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)


def _value(tailnet: str, device: str) -> float | None:
    return REGISTRY.get_sample_value(NAME, {"tailnet": tailnet, "device": device})


def test_tagged_devices_with_an_expiry_have_a_series_and_lose_it_when_gone() -> None:
    proxy = Device("n1", name="web-0.corp.ts.net.", tags=("tag:k8s",), expires=WHEN)
    laptop = Device("n2", name="laptop.corp.ts.net", user="alice@corp", expires=WHEN)
    no_expiry = Device("n3", name="web-1.corp.ts.net", tags=("tag:k8s",))
    observe_device_expiry("corp", [proxy, laptop, no_expiry])
    assert _value("corp", "web-0.corp.ts.net") == WHEN.timestamp()
    assert _value("corp", "laptop.corp.ts.net") is None  # a user's device: not tsgw's
    assert _value("corp", "web-1.corp.ts.net") is None  # key expiry disabled
    observe_device_expiry("other", [proxy])  # another tailnet's series are its own
    observe_device_expiry("corp", [no_expiry])
    assert _value("corp", "web-0.corp.ts.net") is None
    assert _value("other", "web-0.corp.ts.net") == WHEN.timestamp()
