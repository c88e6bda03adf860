"""Which translation each kind of object gets.

TailscaleEndpoints, TailscaleServices and TailscaleGateway each translate into at most one proxy
group and a status; TailscaleTailnet and TailscaleRoutePolicy are not translated alone (the
first is looked up by the others, the second applied onto their groups by `apply_policies`).
"""

from __future__ import annotations

from typing import Any

from tsgw import api
from tsgw.model import ObjectStatus, ProxyGroup
from tsgw.translate._context import _Ctx
from tsgw.translate._egress import _endpoints
from tsgw.translate._gateway import _gateway
from tsgw.translate._ingress import _services

__all__ = ["translate_object"]


def translate_object(ctx: _Ctx, obj: api.Object[Any]) -> tuple[ProxyGroup | None, ObjectStatus]:
    """One TailscaleEndpoints, TailscaleServices or TailscaleGateway → its proxy group and status."""
    if obj.kind == "TailscaleEndpoints":
        return _endpoints(ctx, obj)
    if obj.kind == "TailscaleServices":
        return _services(ctx, obj)
    if obj.kind == "TailscaleGateway":
        return _gateway(ctx, obj)
    raise ValueError(f"translate_object does not handle {obj.kind}")
