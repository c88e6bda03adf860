"""The operator image's file tree (`just image-tree`, tools/image_tree.py): tsgw installed as a
wheel with only its runtime dependencies, an entry point that sees nothing else, and a second run
that builds nothing."""

from __future__ import annotations

import subprocess

import pytest

from tools import image_tree

pytestmark = pytest.mark.integration


def test_the_tree_holds_tsgw_and_its_runtime_dependencies_only() -> None:
    tree = image_tree.ensure()
    lib = tree / "lib"
    assert (lib / "tsgw" / "cli" / "__init__.py").is_file()  # the package itself, not a link
    assert not list(lib.glob("*.pth")), "an editable install or path hook in the image"
    dists = {p.name.split("-", 1)[0].lower() for p in lib.glob("*.dist-info")}
    assert {"tsgw", "anyio", "grpclib", "orjson", "kubernetes_asyncio", "prometheus_client"} <= dists
    # No dev or bench group: test runners, linters, the Kubernetes client of the benchmarks.
    assert not dists & {"pytest", "mypy", "ruff", "hypothesis", "kopf", "uvicorn", "trio"}
    # Bytecode compiled: a read-only root filesystem costs nothing at start-up.
    assert list((lib / "tsgw" / "__pycache__").glob("*.pyc"))

    entry = tree / "bin" / "tsgw"
    assert entry.read_text().splitlines()[0] == image_tree.SHEBANG
    assert entry.stat().st_mode & 0o755 == 0o755
    python = [str(image_tree.interpreter()), *image_tree.interpreter_flags()]
    out = subprocess.run([*python, str(entry), "run", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--leader-elect" in out.stdout
    # The entry point's interpreter sees the tree's lib/ and the standard library, nothing else.
    probe = (
        f"import site, sys; site.addsitedir({str(lib)!r}); import tsgw, anyio; "
        "print(tsgw.__file__); print(anyio.__file__); print([p for p in sys.path if 'site-packages' in p])"
    )
    out = subprocess.run([*python, "-c", probe], capture_output=True, text=True, timeout=60)
    tsgw_file, anyio_file, site_packages = out.stdout.splitlines()
    assert tsgw_file.startswith(str(lib))
    assert anyio_file.startswith(str(lib))
    assert site_packages == "[]"


def test_a_second_build_is_a_hash_of_the_sources() -> None:
    first = image_tree.ensure()
    before = (first / "bin" / "tsgw").stat()
    again = image_tree.ensure()
    assert again == first
    after = (again / "bin" / "tsgw").stat()
    # The same files, not rebuilt: nothing was written.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert first.name == f"tsgw-{image_tree.tree_hash()}"
