"""Hand-assembled protobuf wire bytes for discovery responses.

Each resource is serialized once per snapshot; a response is the concatenation of cached field
bytes plus a per-stream nonce, so pushing the same snapshot to many Envoys costs byte copies,
not encodes. The field numbers are those of ``envoy.service.discovery.v3``; a unit test parses
the assembled bytes back with protobuf to pin them.
"""

from __future__ import annotations

from collections.abc import Iterable

_SMALL = [bytes([i]) for i in range(128)]


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    if n < 16384:  # most resources and Any wrappers: two bytes, without the loop
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    tag = _TAGS[number] if number < len(_TAGS) else varint(number << 3 | 2)
    return tag + varint(len(data)) + data


_TAGS = [varint(n << 3 | 2) for n in range(16)]


def field_str(number: int, text: str) -> bytes:
    return field_bytes(number, text.encode()) if text else b""


_ANY_PREFIX: dict[str, bytes] = {}


def any_bytes(type_url: str, value: bytes) -> bytes:
    """``google.protobuf.Any{type_url=1, value=2}``."""
    prefix = _ANY_PREFIX.get(type_url)
    if prefix is None:
        prefix = _ANY_PREFIX[type_url] = field_str(1, type_url) + b"\x12"  # then field 2's length
    return prefix + varint(len(value)) + value


# DiscoveryResponse: version_info=1, resources=2, type_url=4, nonce=5, control_plane=6
def sotw_resource_field(any_msg: bytes) -> bytes:
    return field_bytes(2, any_msg)


def sotw_response(
    version: str, resources: Iterable[bytes], type_url: str, nonce: str, control_plane: bytes
) -> bytes:
    return b"".join(
        (field_str(1, version), *resources, field_str(4, type_url), field_str(5, nonce), control_plane)
    )


def sotw_control_plane(identifier: str) -> bytes:
    return field_bytes(6, field_str(1, identifier)) if identifier else b""


# Resource: version=1, resource=2, name=3
def delta_resource_field(name: str, version: str, any_msg: bytes) -> bytes:
    return field_bytes(2, field_str(1, version) + field_bytes(2, any_msg) + field_str(3, name))


# DeltaDiscoveryResponse: system_version_info=1, resources=2, type_url=4, nonce=5,
# removed_resources=6, control_plane=7
def delta_response(
    system_version: str,
    resources: Iterable[bytes],
    type_url: str,
    removed: Iterable[str],
    nonce: str,
    control_plane: bytes,
) -> bytes:
    return b"".join(
        (
            field_str(1, system_version),
            *resources,
            field_str(4, type_url),
            field_str(5, nonce),
            *(field_bytes(6, n.encode()) for n in removed),
            control_plane,
        )
    )


def delta_control_plane(identifier: str) -> bytes:
    return field_bytes(7, field_str(1, identifier)) if identifier else b""
