"""HuJSON (JSON with comments and trailing commas, the tailnet policy file's format) to a value.

Tailscale's API answers the policy file as JSON when asked with ``Accept: application/json``;
Headscale's ``GET /api/v1/policy`` returns the stored text, which is HuJSON
(github.com/tailscale/hujson: ``//`` and ``/* */`` comments, a comma after the last element).
Comments are dropped and trailing commas removed outside strings, then the standard decoder runs.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(text: str) -> Any:
    """The value of a HuJSON document; ValueError when it is not one."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise ValueError("unterminated comment")
            i = j + 2
        elif c in "]}":
            # A trailing comma: the last non-blank character written before the closer.
            k = len(out) - 1
            while k >= 0 and out[k].isspace():
                k -= 1
            if k >= 0 and out[k] == ",":
                out[k] = ""
            out.append(c)
            i += 1
        else:
            out.append(c)
            i += 1
    return json.loads("".join(out))
