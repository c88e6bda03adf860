"""`python -m benchmarks NAME [ARGS]` runs ``benchmarks/NAME.py``'s ``main(argv)``.

A benchmark prints one JSON object as its last line of output. When it returns 0, that object
is saved to ``benchmarks/results/NAME.json`` (``NAME-VARIANT.json`` when it names a
``"variant"``, so that a variant's run does not replace the headline) with where and when it
ran (``machine``: kernel, CPU model, cores, memory; ``load``: the load average after the run;
``argv``), which ``just bench report`` turns into docs/benchmarks.md. ``report`` itself runs nothing.
"""

from __future__ import annotations

import datetime
import importlib
import io
import json
import os
import pkgutil
import platform
import sys
from pathlib import Path
from typing import Any, TextIO

RESULTS = Path(__file__).resolve().parent / "results"


def _names() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )


class _Tee(io.TextIOBase):
    """Writes through to ``out`` and keeps the last complete line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._partial = ""
        self.last = ""

    def write(self, s: str) -> int:
        self._out.write(s)
        lines = (self._partial + s).split("\n")
        self._partial = lines.pop()
        for line in reversed(lines):
            if line.strip():
                self.last = line
                break
        return len(s)

    def flush(self) -> None:
        self._out.flush()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
    }


def save(name: str, last_line: str, argv: list[str]) -> Path | None:
    """Save a benchmark's last JSON line with its context; None if the line is not JSON."""
    try:
        result = json.loads(last_line)
    except json.JSONDecodeError:
        return None
    if not isinstance(result, dict):
        return None
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else ""
    record = {
        "bench": name,
        "argv": argv,
        "finished": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load": load,
        "result": result,
    }
    RESULTS.mkdir(exist_ok=True)
    variant = result.get("variant")
    if isinstance(variant, str) and variant.replace("-", "").isalnum():
        name = f"{name}-{variant}"  # a variant's run does not replace the headline result
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in _names():
        print(
            f"usage: just bench NAME [ARGS]; NAME is one of: {', '.join(_names()) or '(none yet)'}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"benchmarks.{argv[0]}")
    if argv[0] == "report":
        return int(module.main(argv[1:]) or 0)
    tee = _Tee(sys.stdout)
    real, sys.stdout = sys.stdout, tee  # type: ignore[assignment]
    try:
        rc = int(module.main(argv[1:]) or 0)
    finally:
        sys.stdout = real
    if rc == 0 and (path := save(argv[0], tee.last, argv[1:])) is not None:
        print(
            f"saved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}",
            file=sys.stderr,
        )
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
