"""The whole pipeline in one call: inputs → model → per-group xDS resources and owned objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tsgw.model import Model
from tsgw.translate._build import build_model
from tsgw.translate._inputs import Inputs, Options
from tsgw.translate._objects import owned_objects
from tsgw.translate._xds import XdsResources, xds_resources

__all__ = ["Result", "translate"]


@dataclass(frozen=True, slots=True)
class Result:
    """What one translation produced. `xds` and `objects` are keyed by (namespace, group name);
    the xDS node cluster of a group's Envoys is its group name."""

    model: Model
    xds: dict[tuple[str, str], XdsResources]
    objects: dict[tuple[str, str], list[dict[str, Any]]]


def translate(inputs: Inputs, options: Options | None = None) -> Result:
    """Translate everything. Pure and deterministic; never raises for a bad input object (its
    status in `result.model.statuses` says what is wrong)."""
    opts = options or Options()
    model = build_model(inputs, opts)
    keys = dict(inputs.auth_keys)
    xds = {}
    objects = {}
    for g in model.groups:
        key = (g.namespace, g.name)
        xds[key] = xds_resources(g, connect_proxy_port=opts.connect_proxy_port)
        objects[key] = owned_objects(g, opts, keys)
    return Result(model=model, xds=xds, objects=objects)
