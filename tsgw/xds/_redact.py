"""Secret material out of every view meant for people: dumps, the admin API, logs.

An SDS ``Secret`` (``extensions.transport_sockets.tls.v3.Secret``) carries private keys, session
ticket keys, HMAC secrets and generic secrets; the xDS server sends them to Envoy and to no one
else. :func:`redact_secret` replaces each such data source, inline or not, with a marker that
names its length, and keeps what identifies the resource (name, certificate chain, validation
context), so a dump still shows which certificate a group serves.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REDACTED", "redact_secret"]

REDACTED = "[redacted]"

_SENSITIVE = ("private_key", "password", "secret", "keys", "hmac_secret")


def _data_source(value: Any) -> Any:
    if isinstance(value, dict):
        size = sum(len(str(v)) for k, v in value.items() if k.startswith("inline_"))
        return {"redacted": f"{REDACTED} ({size} characters)"} if size else {"redacted": REDACTED}
    if isinstance(value, list):
        return [_data_source(v) for v in value]
    return REDACTED


def redact_secret(doc: dict[str, Any]) -> dict[str, Any]:
    """A Secret resource's JSON (proto field names) with every secret data source redacted."""
    out = dict(doc)
    tls = out.get("tls_certificate")
    if isinstance(tls, dict):
        out["tls_certificate"] = {k: _data_source(v) if k in _SENSITIVE else v for k, v in tls.items()}
    stk = out.get("session_ticket_keys")
    if isinstance(stk, dict):
        out["session_ticket_keys"] = {k: _data_source(v) for k, v in stk.items()}
    generic = out.get("generic_secret")
    if isinstance(generic, dict):
        out["generic_secret"] = {k: _data_source(v) for k, v in generic.items()}
    return out
