"""Regenerate tsgw/_proto from proto/tsgw (protobuf Python code and type stubs).

Run: `python tools/gen_proto.py`. It installs grpcio-tools (which carries protoc) into a
throw-away virtualenv with uv, so the project itself does not depend on it. The generated
files are committed; ruff and mypy skip tsgw/_proto.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
GRPCIO_TOOLS = "grpcio-tools==1.85.1"  # protoc 35.1 → gencode 7.35, runtime protobuf >= 7.35


def main() -> int:
    uv = pathlib.Path(sys.executable).parent / "uv"
    out = ROOT / "tsgw" / "_proto"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        venv = pathlib.Path(tmp) / "venv"
        subprocess.run([str(uv), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        py = str(venv / "bin" / "python")
        subprocess.run([str(uv), "pip", "install", "-q", "-p", py, GRPCIO_TOOLS], check=True)
        protos = sorted(
            str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto" / "tsgw").rglob("*.proto")
        )
        subprocess.run(
            [
                py,
                "-m",
                "grpc_tools.protoc",
                "-I",
                "proto",
                f"--python_out={out}",
                f"--pyi_out={out}",
                *protos,
            ],
            check=True,
            cwd=ROOT,
        )
    for d in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
