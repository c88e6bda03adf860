"""The API server's validation of what standalone mode reads besides tsgw.api's own kinds.

In a cluster nothing reaches tsgw that the API server has not validated: every object's
metadata (apimachinery's ``ValidateObjectMeta``), core/v1 Services (``ValidateService``,
pkg/apis/core/validation), discovery.k8s.io/v1 EndpointSlices (``ValidateEndpointSlice``,
pkg/apis/discovery/validation) and gateway.networking.k8s.io/v1 Gateways (the Gateway API CRD's
OpenAPI schema and CEL rules). A folder has no API server, so the folder provider runs these
twins: an object they refuse becomes a problem with its file and line and never reaches
translation, exactly as the API server would have refused it with ``kubectl apply``.

The twins cover every field translation or the endpoint prober reads, with the API server's
rules and wording (``Required value``, ``Unsupported value``, ``Invalid value``, ``Duplicate
value``); fields nothing reads are left alone, as their values cannot change what is served.

Deliberate differences, each because standalone serves what it reads directly:

- EndpointSlice addresses may be loopback (127.0.0.0/8, ::1), which the API server refuses
  (``ValidateNonSpecialIP``): a standalone backend usually runs on the same host.
- An EndpointSlice port needs a number, 0-65535. The API server leaves the number optional ("all
  ports") and only bounds it as an int32, but standalone mode dials it (the readiness probe)
  and Envoy serves it, and neither can do either with 70000.
- An EndpointSlice needs the label kubernetes.io/service-name: it is how the slice finds its
  Service (the EndpointSlice controller sets it in a cluster).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from tsgw.api import ValidationError

__all__ = [
    "clip",
    "validate_endpoint_slice",
    "validate_gateway",
    "validate_metadata",
    "validate_service",
    "validate_tls_secret",
]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_IANA_SVC_NAME = re.compile(r"[-a-z0-9]+")
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_GW_PROTOCOL = re.compile(
    r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]+"
)
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
_MAX_ENDPOINTS, _MAX_ADDRESSES, _MAX_SLICE_PORTS = 1000, 100, 100
_MAX_LISTENERS = 64
_CLIP = 256


def clip(text: str, limit: int = _CLIP) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis and the full length when cut: a
    value quoted in a message or a log line stays readable however long the value is."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} chars)"


def _fail(path: str, message: str) -> NoReturn:
    raise ValidationError(path, message)


def _invalid(path: str, value: Any, why: str) -> NoReturn:
    _fail(path, f'Invalid value: "{clip(str(value))}": {why}')


def _str(raw: Any, path: str) -> str:
    if not isinstance(raw, str):
        _fail(path, "must be a string")
    return raw


def _int(raw: Any, path: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        _fail(path, "must be an integer")
    return raw


def _list(raw: Any, path: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        _fail(path, "must be a list")
    return raw


def _map(raw: Any, path: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        _fail(path, "must be an object")
    return raw


def _port(raw: Any, path: str, lo: int) -> int:
    n = _int(raw, path)
    if not lo <= n <= 65535:
        _invalid(path, n, f"must be between {lo} and 65535, inclusive")
    return n


def _pattern(value: str, path: str, pattern: re.Pattern[str], max_len: int, what: str) -> None:
    if len(value) > max_len:
        _invalid(path, value, f"must be no more than {max_len} characters")
    if not pattern.fullmatch(value):
        _invalid(path, value, what)


def dns_label(value: str, path: str) -> None:
    _pattern(
        value,
        path,
        _DNS_LABEL,
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character",
    )


def dns_1035_label(value: str, path: str) -> None:
    _pattern(
        value,
        path,
        _DNS_1035_LABEL,
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
        "an alphabetic character, and end with an alphanumeric character",
    )


def dns_subdomain(value: str, path: str) -> None:
    _pattern(
        value,
        path,
        _DNS_SUBDOMAIN,
        253,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
        "or '.', and must start and end with an alphanumeric character",
    )


def _qualified_name(value: str, path: str) -> None:
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            _invalid(path, value, "prefix part must be non-empty")
        dns_subdomain(prefix, path)
    if not name:
        _invalid(path, value, "name part must be non-empty")
    _pattern(
        name,
        path,
        _QUALIFIED_NAME,
        63,
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
        "end with an alphanumeric character",
    )


def _labels(raw: Any, path: str) -> None:
    for k, v in _map(raw, path).items():
        _qualified_name(_str(k, path), path)
        _pattern(
            _str(v, f"{path}.{k}"),
            f"{path}.{k}",
            _LABEL_VALUE,
            63,
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
            "or '.', and must start and end with an alphanumeric character",
        )


def validate_metadata(
    raw: Mapping[str, Any], namespaced: bool, default_ns: str, name_rule: Callable[[str, str], None]
) -> tuple[str, str]:
    """Check ``raw``'s metadata as ``ValidateObjectMeta`` does (name by ``name_rule``, namespace
    as a DNS label, labels and annotation keys as qualified names, label values) and fill in
    the namespace of a namespaced object that names none. Returns (namespace, name)."""
    md = raw.get("metadata")
    if not isinstance(md, dict):
        _fail("metadata", "Required value")
    name = md.get("name")
    if name is None or name == "":
        _fail("metadata.name", "Required value: name or generateName is required")
    name_rule(_str(name, "metadata.name"), "metadata.name")
    _labels(md.get("labels"), "metadata.labels")
    for k in _map(md.get("annotations"), "metadata.annotations"):
        _qualified_name(_str(k, "metadata.annotations"), "metadata.annotations")
    if not namespaced:
        return "", name
    ns = md.get("namespace") or default_ns
    dns_label(_str(ns, "metadata.namespace"), "metadata.namespace")
    md["namespace"] = ns
    return ns, name


def _protocol(raw: Any, path: str) -> None:
    if raw is not None and raw not in _PROTOCOLS:
        _fail(path, _unsupported(raw, _PROTOCOLS))


def _unsupported(value: Any, allowed: tuple[str, ...]) -> str:
    return f'Unsupported value: "{clip(str(value))}": supported values: ' + ", ".join(
        f'"{v}"' for v in allowed
    )


def validate_service(raw: Mapping[str, Any]) -> None:
    """core/v1 Service: the ports translation matches backends against (metadata apart)."""
    spec = _map(raw.get("spec"), "spec")
    ports = _list(spec.get("ports"), "spec.ports")
    if not ports:
        _fail("spec.ports", "Required value: a Service needs at least one port")
    names: set[str] = set()
    for i, p in enumerate(ports):
        path = f"spec.ports[{i}]"
        p = _map(p, path)
        name = p.get("name")
        if name is None or name == "":
            if len(ports) > 1:
                _fail(f"{path}.name", "Required value")
            name = ""
        else:
            dns_label(_str(name, f"{path}.name"), f"{path}.name")
        if name in names:
            _fail(f"{path}.name", f'Duplicate value: "{name}"')
        names.add(name)
        if p.get("port") is None:
            _fail(f"{path}.port", "Required value")
        _port(p["port"], f"{path}.port", 1)
        _protocol(p.get("protocol"), f"{path}.protocol")
        target = p.get("targetPort")
        if isinstance(target, str):
            _iana_svc_name(target, f"{path}.targetPort")
        elif target is not None:
            _port(target, f"{path}.targetPort", 1)


def _iana_svc_name(value: str, path: str) -> None:
    if len(value) > 15:
        _invalid(path, value, "must be no more than 15 characters")
    if not _IANA_SVC_NAME.fullmatch(value):
        _invalid(path, value, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value or value.startswith("-") or value.endswith("-"):
        _invalid(path, value, "must not contain consecutive hyphens, nor begin or end with a hyphen")
    if not any(c.isalpha() for c in value):
        _invalid(path, value, "must contain at least one letter (a-z)")


def _ip(value: str, path: str, version: int) -> None:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        ip = None
    if ip is None or ip.version != version or "%" in value:
        _invalid(path, value, f"must be a valid IPv{version} address")
    if ip.is_unspecified or ip.is_link_local or ip.is_multicast:
        _invalid(path, value, "may not be unspecified, link-local or multicast")


def _fqdn(value: str, path: str) -> None:
    dns_subdomain(value, path)
    if "." not in value:
        _invalid(path, value, "should be a domain with at least two segments separated by dots")


def validate_endpoint_slice(raw: Mapping[str, Any]) -> None:
    """discovery.k8s.io/v1 EndpointSlice: address type, endpoints and ports (metadata apart)."""
    labels = _map(raw["metadata"].get("labels"), "metadata.labels")
    if not labels.get("kubernetes.io/service-name"):
        _fail("metadata.labels", "an EndpointSlice needs the label kubernetes.io/service-name: <Service>")
    address_type = raw.get("addressType")
    if address_type is None or address_type == "":
        _fail("addressType", "Required value")
    if address_type not in _ADDRESS_TYPES:
        _fail("addressType", _unsupported(address_type, _ADDRESS_TYPES))
    check: Callable[[str, str], None] = {
        "IPv4": lambda a, p: _ip(a, p, 4),
        "IPv6": lambda a, p: _ip(a, p, 6),
        "FQDN": _fqdn,
    }[address_type]
    endpoints = _list(raw.get("endpoints"), "endpoints")
    if len(endpoints) > _MAX_ENDPOINTS:
        _fail("endpoints", f"Too many: {len(endpoints)}: must have at most {_MAX_ENDPOINTS} items")
    for i, ep in enumerate(endpoints):
        path = f"endpoints[{i}]"
        ep = _map(ep, path)
        addresses = _list(ep.get("addresses"), f"{path}.addresses")
        if not addresses:
            _fail(f"{path}.addresses", "Required value: must contain at least 1 address")
        if len(addresses) > _MAX_ADDRESSES:
            _fail(
                f"{path}.addresses", f"Too many: {len(addresses)}: must have at most {_MAX_ADDRESSES} items"
            )
        for j, a in enumerate(addresses):
            check(_str(a, f"{path}.addresses[{j}]"), f"{path}.addresses[{j}]")
        for cond, value in _map(ep.get("conditions"), f"{path}.conditions").items():
            if value is not None and not isinstance(value, bool):
                _fail(f"{path}.conditions.{cond}", "must be a boolean")
        if ep.get("hostname") is not None:
            dns_label(_str(ep["hostname"], f"{path}.hostname"), f"{path}.hostname")
    ports = _list(raw.get("ports"), "ports")
    if len(ports) > _MAX_SLICE_PORTS:
        _fail("ports", f"Too many: {len(ports)}: must have at most {_MAX_SLICE_PORTS} items")
    names: set[str] = set()
    for i, p in enumerate(ports):
        path = f"ports[{i}]"
        p = _map(p, path)
        name = p.get("name") or ""
        if name:
            dns_label(_str(name, f"{path}.name"), f"{path}.name")
        if name in names:
            _fail(f"{path}.name", f'Duplicate value: "{name}"')
        names.add(name)
        if p.get("port") is None:
            _fail(f"{path}.port", "Required value: standalone mode needs a port number")
        _port(p["port"], f"{path}.port", 0)
        _protocol(p.get("protocol"), f"{path}.protocol")


def validate_gateway(raw: Mapping[str, Any]) -> None:
    """gateway.networking.k8s.io/v1 Gateway: the class and the listeners (metadata apart), as
    the Gateway API CRD's schema and CEL rules check them."""
    if raw.get("spec") is None:
        _fail("spec", "Required value")
    spec = _map(raw.get("spec"), "spec")
    cls = spec.get("gatewayClassName")
    if cls is None or cls == "":
        _fail("spec.gatewayClassName", "Required value")
    dns_subdomain(_str(cls, "spec.gatewayClassName"), "spec.gatewayClassName")
    if spec.get("listeners") is None:
        _fail("spec.listeners", "Required value")
    listeners = _list(spec.get("listeners"), "spec.listeners")
    if not listeners:
        _fail("spec.listeners", "should have at least 1 items")
    if len(listeners) > _MAX_LISTENERS:
        _fail("spec.listeners", f"Too many: {len(listeners)}: must have at most {_MAX_LISTENERS} items")
    names: set[str] = set()
    combos: set[tuple[int, str, str]] = set()
    for i, li in enumerate(listeners):
        path = f"spec.listeners[{i}]"
        li = _map(li, path)
        for required in ("name", "port", "protocol"):
            if li.get(required) is None:
                _fail(f"{path}.{required}", "Required value")
        name = _str(li["name"], f"{path}.name")
        dns_subdomain(name, f"{path}.name")
        port = _port(li["port"], f"{path}.port", 1)
        protocol = _str(li["protocol"], f"{path}.protocol")
        _pattern(protocol, f"{path}.protocol", _GW_PROTOCOL, 255, "must be a Gateway API protocol")
        hostname = li.get("hostname")
        if hostname is not None:
            _pattern(
                _str(hostname, f"{path}.hostname"), f"{path}.hostname", _HOSTNAME, 253, "must be a hostname"
            )
        if name in names:
            _fail("spec.listeners", "Listener name must be unique within the Gateway")
        names.add(name)
        combo = (port, protocol, str(hostname or ""))
        if combo in combos:
            _fail(
                "spec.listeners",
                "Combination of port, protocol and hostname must be unique for each listener",
            )
        combos.add(combo)


_TLS_KEYS = ("tls.crt", "tls.key")


def validate_tls_secret(raw: Mapping[str, Any]) -> None:
    """A v1 Secret as the API server checks one of type ``kubernetes.io/tls`` (the only type
    standalone mode reads): ``data`` values base64, ``stringData`` values strings, and both
    ``tls.crt`` and ``tls.key`` present in one of them. Whether they hold a usable certificate is
    translation's to say (a condition, not a refused file)."""
    kind = raw.get("type")
    if kind != "kubernetes.io/tls":
        _invalid("type", kind, 'standalone mode reads Secrets of type "kubernetes.io/tls" only')
    found: set[str] = set()
    for where in ("data", "stringData"):
        values = raw.get(where)
        if values is None:
            continue
        for k, v in _map(values, where).items():
            if not isinstance(v, str):
                _fail(f"{where}[{k}]", "Invalid value: must be a string")
            if where == "data":
                try:
                    base64.b64decode(v, validate=True)
                except (binascii.Error, ValueError):
                    _fail(f"data[{k}]", "Invalid value: illegal base64 data")
            found.add(str(k))
    for k in _TLS_KEYS:
        if k not in found:
            _fail(f"data[{k}]", "Required value")
