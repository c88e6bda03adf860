"""The operator image's file tree, built outside the repository and cached.

``just image-tree`` (``python -m tools.image_tree``) prints the path of the tree, building it only
when it is missing::

    $TSGW_CACHE/image/tsgw-<hash>/        (TSGW_CACHE defaults to ~/.cache/tsgw)
      bin/tsgw   the entry point: a Python script run by ``/usr/bin/python3 -ISu`` (isolated, no
                 site-packages but lib/, unbuffered output), which adds lib/ as its one site
                 directory and calls ``tsgw.cli.main``
      lib/       tsgw itself (its wheel, not an editable install) and its runtime dependencies
                 exactly as uv.lock pins them (no dev or bench group; hashes checked), bytecode
                 compiled so a read-only root filesystem costs nothing at start-up

``deploy/image/Containerfile`` copies that tree to ``/opt/tsgw`` of a distroless Python 3.11 base,
whose ``/usr/bin/python3`` is the shebang's interpreter. The test bed's image table runs the same
``bin/tsgw`` for ``ghcr.io/tsgw/tsgw``, so what the bed runs is what the image holds.

``<hash>`` covers uv.lock, pyproject.toml, README.md (wheel metadata), every file of tsgw/, this
module and the interpreter's version: a second run with nothing changed hashes the sources (tens
of milliseconds) and builds nothing. A tree is built in a temporary folder and renamed into place
(so a tree that exists is whole), under a lock; the few most recently used trees are kept, since
several work trees share the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TSGW_CACHE", "~/.cache/tsgw")).expanduser()
IMAGES = CACHE / "image"
KEEP = 6
"""How many trees to keep (most recently used first)."""

#: The interpreter of the image (distroless python3-debian12: Python 3.11) and its flags: -I
#: ignores PYTHON* variables and the user's site, -S loads no site-packages (lib/ is added by
#: the script), -u keeps the logs unbuffered for `kubectl logs`.
SHEBANG = "#!/usr/bin/python3 -ISu"

ENTRY_POINT = f'''{SHEBANG}
"""tsgw's entry point in the operator image: its own packages (lib/ beside bin/) and the standard
library, nothing else. Built by tools/image_tree.py."""

import os
import site
import sys

site.addsitedir(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "lib"))

from tsgw.cli import main  # noqa: E402

sys.exit(main())
'''


def interpreter() -> Path:
    """The Python the tree is built for (the project's, i.e. the venv's base interpreter)."""
    venv = ROOT / ".venv" / "bin" / "python"
    return venv.resolve() if venv.exists() else Path(sys.executable).resolve()


def interpreter_flags() -> list[str]:
    """The shebang's flags, for running ``bin/tsgw`` with another path to the same Python."""
    return SHEBANG.split()[1:]


def _uv() -> str:
    venv = ROOT / ".venv" / "bin" / "uv"
    found = str(venv) if venv.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv not found: run `./justw sync` first")
    return found


def _sources() -> Iterator[Path]:
    for name in ("uv.lock", "pyproject.toml", "README.md", "tools/image_tree.py"):
        yield ROOT / name
    for p in sorted((ROOT / "tsgw").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            yield p


def tree_hash() -> str:
    h = hashlib.sha256()
    h.update(f"{sys.version}\0{platform.machine()}\0".encode())
    for p in _sources():
        h.update(str(p.relative_to(ROOT)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def tree_path() -> Path:
    """Where the tree of the current sources is (or would be)."""
    return IMAGES / f"tsgw-{tree_hash()}"


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with (IMAGES / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], log: Path, **kw: object) -> None:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        p = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, **kw)  # type: ignore[call-overload]
    if p.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed (exit {p.returncode}); log {log}:\n{tail}")


def _build(out: Path, log: Path) -> None:
    uv, py = _uv(), str(interpreter())
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    with tempfile.TemporaryDirectory(prefix="tsgw-image-build-") as work:
        w = Path(work)
        req = w / "requirements.txt"
        # Runtime dependencies only, as locked (`--locked` fails if uv.lock is stale).
        _run(
            [uv, "export", "--locked", "--no-default-groups", "--no-emit-project", "--format",
             "requirements-txt", "--quiet", "-o", str(req)],
            log, env=env,
        )  # fmt: skip
        lib = out / "lib"
        common = ["--python", py, "--target", str(lib), "--no-deps", "--compile-bytecode", "--quiet"]
        _run([uv, "pip", "install", *common, "--require-hashes", "-r", str(req)], log, env=env)
        # The project itself as a wheel (what a user's pip would install), never editable.
        _run([uv, "build", "--wheel", "--python", py, "--out-dir", str(w / "dist"), "--quiet"], log, env=env)
        wheels = sorted((w / "dist").glob("tsgw-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one tsgw wheel, found {wheels}")
        _run([uv, "pip", "install", *common, str(wheels[0])], log, env=env)
    # Console scripts uv wrote for the target name the build interpreter: the image has its own.
    shutil.rmtree(lib / "bin", ignore_errors=True)
    (out / "bin").mkdir()
    entry = out / "bin" / "tsgw"
    entry.write_text(ENTRY_POINT)
    entry.chmod(0o755)
    # World-readable (the operator runs as uid 65532), owned by nobody in particular.
    for d, _, files in os.walk(out):
        os.chmod(d, 0o755)
        for f in files:
            p = Path(d, f)
            p.chmod(0o755 if os.access(p, os.X_OK) else 0o644)


def _prune(keep: Path) -> None:
    trees = sorted(
        (p for p in IMAGES.glob("tsgw-*") if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in trees[KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def ensure(*, quiet: bool = True) -> Path:
    """The tree of the current sources, built if missing; returns its path."""
    path = tree_path()
    if (path / "bin" / "tsgw").exists():
        os.utime(path)  # recently used: kept by _prune
        return path
    with _lock():
        if (path / "bin" / "tsgw").exists():
            return path
        t0 = time.monotonic()
        log = CACHE / "logs" / f"image-{path.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=IMAGES))
        try:
            _build(tmp, log)
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _prune(path)
        if not quiet:
            print(f"built {path} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return path


def main(argv: list[str]) -> int:
    if argv[:1] == ["hash"]:
        print(tree_hash())
        return 0
    try:
        print(ensure(quiet=False))
    except RuntimeError as e:
        print(f"image-tree: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
