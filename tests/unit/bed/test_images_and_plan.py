"""The bed's pure parts: the image table, Kubernetes' command/args rule, the address plan."""

from __future__ import annotations

import ipaddress

import pytest

from tests.bed import _images
from tests.bed._topology import MAX_DEVICES, Plan


def test_image_repository_drops_tag_and_digest_but_not_registry_port() -> None:
    assert _images.repository("ghcr.io/tailscale/tailscale:v1.102.3") == "ghcr.io/tailscale/tailscale"
    assert _images.repository("registry:5000/x/tsgw@sha256:abc") == "registry:5000/x/tsgw"
    assert _images.repository("busybox") == "busybox"


def test_unknown_image_is_refused_with_the_table_named() -> None:
    with pytest.raises(_images.UnknownImage, match="not in the test bed's image table"):
        _images.resolve("example.invalid/nope:1")


def test_command_replaces_entrypoint_and_drops_default_args() -> None:
    image = _images.Image(("/bin/entry",), ("--default",))
    assert _images.argv(image, None, None) == ["/bin/entry", "--default"]
    assert _images.argv(image, None, ["--mine"]) == ["/bin/entry", "--mine"]
    assert _images.argv(image, ["/bin/other"], None) == ["/bin/other"]
    assert _images.argv(image, ["/bin/other"], ["x"]) == ["/bin/other", "x"]


def test_shell_image_sleeps_unless_given_a_command() -> None:
    image = _images.resolve("bed.test/shell:1")
    assert _images.argv(image, None, None) == ["sleep", "infinity"]


def test_two_beds_never_share_an_address_or_a_namespace_name() -> None:
    a, b = Plan(0, 3), Plan(1, 3)
    nets_a = {ipaddress.ip_network(a.pod_cidr(k)) for k in range(3)} | {ipaddress.ip_network(a.cluster_cidr)}
    nets_b = {ipaddress.ip_network(b.pod_cidr(k)) for k in range(3)}
    assert not any(x.overlaps(y) for x in nets_a for y in nets_b)
    names_a = {a.fabric_ns, a.tailnet_ns, *(a.node_ns(k) for k in range(3))}
    names_b = {b.fabric_ns, b.tailnet_ns, *(b.node_ns(k) for k in range(3))}
    assert not names_a & names_b
    assert not any(n.startswith(f"{a.prefix}-") for n in names_b)


def test_node_addresses_are_on_the_fabric_and_pod_cidrs_in_the_cluster_cidr() -> None:
    p = Plan(2, 4)
    cluster = ipaddress.ip_network(p.cluster_cidr)
    for k in range(4):
        assert ipaddress.ip_network(p.pod_cidr(k)).subnet_of(cluster)  # type: ignore[arg-type]
        assert ipaddress.ip_address(p.bridge_ip(k)) in ipaddress.ip_network(p.pod_cidr(k))
        assert p.node_ip(k).startswith(f"10.{p.octet}.255.")


def test_tailnet_devices_get_their_own_namespace_and_fabric_address() -> None:
    p = Plan(3, 4)
    fabric = ipaddress.ip_network(f"{p.node_ip(0)}/24", strict=False)
    taken = {p.tailnet_ip, *(p.node_ip(k) for k in range(4))}
    devices = [p.device_ip(n) for n in range(MAX_DEVICES)]
    assert len(set(devices)) == MAX_DEVICES
    assert all(ipaddress.ip_address(d) in fabric for d in devices)
    assert not taken & set(devices)
    # Named under the bed's prefix, so the bed's sweep removes them with the rest.
    assert p.device_ns(7) == f"{p.prefix}-d7"
    with pytest.raises(ValueError, match="at most"):
        p.device_ip(MAX_DEVICES)
