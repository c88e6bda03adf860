"""Caller identity on HTTP ingress: the tailnet caller named to the backend in request headers.

tailscaled's serve hands every connection to Envoy with a PROXY protocol v2 header whose source
is the caller's tailnet address; Envoy's ``proxy_protocol`` listener filter makes it the
connection's remote address. Each HTTP ingress listener then runs two filters before the router:

1. **strip** (``envoy.filters.http.header_mutation``): every request header whose name starts
   ``tailscale-`` or ``tailscale_`` (any case) is removed, so a caller can never forge one, nor
   smuggle a variant that a backend framework folds into the same name (``_`` becomes ``-``
   in CGI-style environments).
2. **identify** (``envoy.filters.http.composite`` wrapped in ``ExtensionWithMatcher``): an exact
   match of ``envoy.matching.inputs.source_ip`` (the remote address, i.e. the PROXY header's
   source) against a map of every tailnet device address, whose action is a ``header_mutation``
   setting that device's headers. An address not in the map (a device the facts do not know yet)
   gets no identity headers at all, never someone else's.

Headers, from the tailnet facts the controllers publish (the API's devices, users and policy file):

- ``Tailscale-User-Login``: the login name of the device's owner (untagged devices only);
- ``Tailscale-User-Name``: the owner's display name (untagged only; the login when unknown);
  RFC 2047 encoded when not plain ASCII, as Tailscale's serve encodes it;
- ``Tailscale-Node-Name``: the device's MagicDNS name;
- ``Tailscale-Node-Tags``: the device's tags, comma-separated (tagged devices only).

A tagged device has no user: like Tailscale's own policy, tsgw never names the person who tagged
it. Identity is as fresh as the facts (polled every ``--tailnet-poll-interval``): a device that
changed owner or tags keeps its former headers until the next poll.

Envoy references: the composite filter and ExecuteFilterAction
(envoy/extensions/filters/http/composite/v3), the network matching inputs usable by HTTP
matchers (envoy/extensions/matching/common_inputs/network/v3, ``SourceIPInput``), and the
header mutation filter with ``remove_on_match`` (envoy/config/common/mutation_rules/v3).
"""

from __future__ import annotations

import ipaddress

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.http.composite.v3 import composite_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.matching.common_inputs.network.v3 import network_inputs_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message
from xds.type.matcher.v3 import matcher_pb2

from tsgw.model import CallerIdentity
from tsgw.translate._inputs import TailnetFacts

__all__ = [
    "NODE_NAME",
    "NODE_TAGS",
    "STRIPPED_PREFIXES",
    "USER_LOGIN",
    "USER_NAME",
    "caller_filters",
    "caller_identity",
]

USER_LOGIN = "Tailscale-User-Login"
USER_NAME = "Tailscale-User-Name"
NODE_NAME = "Tailscale-Node-Name"
NODE_TAGS = "Tailscale-Node-Tags"
STRIPPED_PREFIXES = ("tailscale-", "tailscale_")
"""Incoming request headers starting with these (any case) never reach a backend."""

_STRIP_NAME = "tsgw.caller.strip"
_IDENTIFY_NAME = "tsgw.caller.identify"
_CACHE_SIZE = 8

# Facts objects are replaced, never changed, and one facts object serves every group of its
# tailnet: both tables are kept by identity (the object is held, so its id cannot be reused).
_tables: dict[int, tuple[TailnetFacts, CallerIdentity]] = {}
_filters: dict[int, tuple[CallerIdentity, tuple[bytes, bytes | None]]] = {}


def caller_identity(facts: TailnetFacts) -> CallerIdentity:
    """The header table of a tailnet's devices, by address (the same object for the same facts)."""
    hit = _tables.get(id(facts))
    if hit is not None and hit[0] is facts:
        return hit[1]
    table = _build_table(facts)
    if len(_tables) >= _CACHE_SIZE:
        _tables.clear()
    _tables[id(facts)] = (facts, table)
    return table


def _build_table(facts: TailnetFacts) -> CallerIdentity:
    rows: dict[str, tuple[tuple[str, str], ...]] = {}
    for d in facts.devices:
        headers: list[tuple[str, str]] = []
        if d.tags:
            headers.append((NODE_TAGS, ",".join(d.tags)))
        elif d.user:
            user = facts.users.get(d.user)
            headers.append((USER_LOGIN, _value(d.user)))
            headers.append((USER_NAME, _value((user.display_name if user else "") or d.user)))
        if d.name:
            headers.append((NODE_NAME, _value(d.name.rstrip("."))))
        if not headers:
            continue
        for a in d.addresses:
            try:
                key = str(ipaddress.ip_address(a))  # Envoy's own text form (RFC 5952 for IPv6)
            except ValueError:
                continue
            rows.setdefault(key, tuple(sorted(headers)))
    return CallerIdentity(tuple(sorted(rows.items())))


def _value(text: str) -> str:
    """A header value: printable ASCII as is, anything else RFC 2047 Q-encoded (UTF-8); so is a
    name that itself looks encoded (``=?``), which a backend would otherwise decode as such."""
    if all(" " <= c <= "~" for c in text) and "=?" not in text:
        return text
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if c.isascii() and c.isalnum():
            out.append(c)
        elif c == " ":
            out.append("_")
        else:
            out.append(f"={b:02X}")
    return "=?utf-8?q?" + "".join(out) + "?="


def caller_filters(callers: CallerIdentity) -> tuple[hcm_pb2.HttpFilter, ...]:
    """The HTTP filters (before the router) that strip forged headers and set the caller's."""
    hit = _filters.get(id(callers))
    if hit is not None and hit[0] is callers:
        strip, identify = hit[1]
    else:
        strip = _strip().SerializeToString(deterministic=True)
        identify = _identify(callers).SerializeToString(deterministic=True) if callers.callers else None
        if len(_filters) >= _CACHE_SIZE:
            _filters.clear()
        _filters[id(callers)] = (callers, (strip, identify))
    out = [_http_filter(_STRIP_NAME, header_mutation_pb2.HeaderMutation, strip)]
    if identify is not None:
        out.append(_http_filter(_IDENTIFY_NAME, extension_matcher_pb2.ExtensionWithMatcher, identify))
    return tuple(out)


def _http_filter(name: str, cls: type[Message], value: bytes) -> hcm_pb2.HttpFilter:
    f = hcm_pb2.HttpFilter(name=name)
    f.typed_config.type_url = "type.googleapis.com/" + cls.DESCRIPTOR.full_name
    f.typed_config.value = value
    return f


def _any(msg: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg, deterministic=True)
    return a


def _strip() -> header_mutation_pb2.HeaderMutation:
    msg = header_mutation_pb2.HeaderMutation()
    for prefix in STRIPPED_PREFIXES:
        m = msg.mutations.request_mutations.add()
        m.remove_on_match.key_matcher.CopyFrom(string_pb2.StringMatcher(prefix=prefix, ignore_case=True))
    return msg


def _set_headers(headers: tuple[tuple[str, str], ...]) -> any_pb2.Any:
    msg = header_mutation_pb2.HeaderMutation()
    for name, value in headers:
        m: mutation_rules_pb2.HeaderMutation = msg.mutations.request_mutations.add()
        m.append.append_action = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        m.append.header.key = name
        m.append.header.value = value
    return _any(msg)


def _identify(callers: CallerIdentity) -> extension_matcher_pb2.ExtensionWithMatcher:
    msg = extension_matcher_pb2.ExtensionWithMatcher()
    msg.extension_config.name = "envoy.filters.http.composite"
    msg.extension_config.typed_config.CopyFrom(_any(composite_pb2.Composite()))
    tree = msg.xds_matcher.matcher_tree
    tree.input.name = "envoy.matching.inputs.source_ip"
    tree.input.typed_config.CopyFrom(_any(network_inputs_pb2.SourceIPInput()))
    by_headers: dict[tuple[tuple[str, str], ...], matcher_pb2.Matcher.OnMatch] = {}
    entries = tree.exact_match_map.map
    for address, headers in callers.callers:
        on_match = by_headers.get(headers)
        if on_match is None:
            action = composite_pb2.ExecuteFilterAction(
                typed_config=extension_pb2.TypedExtensionConfig(
                    name="envoy.filters.http.header_mutation", typed_config=_set_headers(headers)
                )
            )
            on_match = matcher_pb2.Matcher.OnMatch()
            on_match.action.name = "composite-action"
            on_match.action.typed_config.CopyFrom(_any(action))
            by_headers[headers] = on_match
        entries[address].CopyFrom(on_match)
    return msg
