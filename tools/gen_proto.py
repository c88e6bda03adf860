"""Regenerate tsgw/_proto from proto/ (protobuf Python code and type stubs).

Run: `python tools/gen_proto.py`. It installs grpcio-tools (which carries protoc) into a
throw-away virtualenv with uv, so the project itself does not depend on it. The generated
files are committed; ruff and mypy skip tsgw/_proto.

Two trees: tsgw's own admin API (proto/tsgw) and Envoy Gateway's extension service, vendored
(proto/envoygateway, see its README). The latter imports Envoy's messages; protoc reads their
descriptors from the installed xds-protos modules (``--descriptor_set_in``), and the generated
code imports those modules, so Envoy's messages are the same classes tsgw.xds uses. protoc
writes absolute imports (``from envoygateway.extension import context_pb2``); they are rewritten
to ``tsgw._proto.envoygateway...`` afterwards.
"""

from __future__ import annotations

import importlib
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
GRPCIO_TOOLS = "grpcio-tools==1.85.1"  # protoc 35.1 → gencode 7.35, runtime protobuf >= 7.35
# The Envoy protos Envoy Gateway's service.proto imports, as xds-protos modules.
ENVOY_MODULES = (
    "envoy.config.cluster.v3.cluster_pb2",
    "envoy.config.endpoint.v3.endpoint_pb2",
    "envoy.config.listener.v3.listener_pb2",
    "envoy.config.route.v3.route_components_pb2",
    "envoy.config.route.v3.route_pb2",
    "envoy.extensions.transport_sockets.tls.v3.secret_pb2",
)
LOCAL_PACKAGES = ("tsgw", "envoygateway")  # top-level proto packages generated into tsgw/_proto


def envoy_descriptor_set(path: pathlib.Path) -> None:
    """Write the FileDescriptorSet of ENVOY_MODULES and everything they import."""
    from google.protobuf import descriptor_pb2

    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(fd: object) -> None:
        name = fd.name  # type: ignore[attr-defined]
        if name in seen:
            return
        for dep in fd.dependencies:  # type: ignore[attr-defined]
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)  # type: ignore[attr-defined]
        seen[name] = proto

    for mod in ENVOY_MODULES:
        add(importlib.import_module(mod).DESCRIPTOR)
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=list(seen.values())).SerializeToString())


def localize_imports(out: pathlib.Path) -> None:
    """protoc's absolute imports of our own generated modules → imports under tsgw._proto."""
    pattern = re.compile(rf"^(from|import) ({'|'.join(LOCAL_PACKAGES)})\.(?!_proto\.)", re.M)
    for f in [*out.rglob("*_pb2.py"), *out.rglob("*_pb2.pyi")]:
        text = f.read_text()
        new = pattern.sub(r"\1 tsgw._proto.\2.", text)
        if new != text:
            f.write_text(new)


def main() -> int:
    uv = pathlib.Path(sys.executable).parent / "uv"
    out = ROOT / "tsgw" / "_proto"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        venv = pathlib.Path(tmp) / "venv"
        subprocess.run([str(uv), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        py = str(venv / "bin" / "python")
        subprocess.run([str(uv), "pip", "install", "-q", "-p", py, GRPCIO_TOOLS], check=True)
        deps = pathlib.Path(tmp) / "envoy.pb"
        envoy_descriptor_set(deps)
        protos = sorted(
            str(p.relative_to(ROOT / "proto"))
            for pkg in LOCAL_PACKAGES
            for p in (ROOT / "proto" / pkg).rglob("*.proto")
        )
        subprocess.run(
            [
                py,
                "-m",
                "grpc_tools.protoc",
                "-I",
                "proto",
                f"--descriptor_set_in={deps}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                *protos,
            ],
            check=True,
            cwd=ROOT,
        )
    localize_imports(out)
    for d in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
