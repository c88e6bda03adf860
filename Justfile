# Every command a person runs. `./justw RECIPE` works where `just` is not installed.
set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")
export UV_PYTHON_DOWNLOADS := "never"
export PYTHONDONTWRITEBYTECODE := "1"

# List the recipes.
default:
    @just --list

# Run tsgw standalone on examples/standalone: xDS server, local Envoys, backends, and (as root,
# with the test bed's binaries) a Headscale tailnet in a private network namespace. Ctrl-C stops it.
run *ARGS: sync
    python -m tools.standalone "$@"

# Install Python deps, build the real components (cached), run every test. Extra args go to pytest.
test *ARGS: testbin
    python -m pytest "$@"

# Install the Python dependencies into .venv from uv.lock.
sync:
    uv sync --locked --quiet

# Build or install every pinned real component into ~/.cache/tsgw (a no-op when warm), and the
# operator image's file tree the test bed runs for ghcr.io/tsgw/tsgw.
testbin: sync
    python tools/testbin.py
    python -m tools.image_tree >/dev/null

# The operator image's exact file tree (tsgw's wheel + uv.lock's runtime deps in lib/, bin/tsgw),
# cached in ~/.cache/tsgw/image/ by a hash of uv.lock and the sources; prints its path. Build the
# image from it: `docker build -f deploy/image/Containerfile -t IMAGE "$(just image-tree)"`.
image-tree: sync
    python -m tools.image_tree

# ruff (format check and lint), mypy --strict, import-linter layer contracts.
lint: sync
    ruff format --check .
    ruff check .
    mypy
    lint-imports

# Format and autofix.
fmt: sync
    ruff format .
    ruff check --fix .

# Run one benchmark (benchmarks/NAME.py); its last line of output is one JSON object.
bench NAME *ARGS: testbin
    python -m benchmarks "$@"

# A Kubernetes test bed in network namespaces: bed up [--nodes N] [--tailnet] [--devices N] | status | logs POD [-n NS] | down.
bed *ARGS: testbin
    python -m tests.bed "$@"

# A tailnet in a box: tsgw-testcontrol (Tailscale Services) + the hosted-API fake in front of it,
# in a private network namespace (root). `just tailnet up` runs in the foreground; `just tailnet down`.
tailnet CMD: testbin
    python -m tests.support.tailnet_box "$@"

# Plot each panel of deploy/grafana/tsgw.json into docs/operations/*.png from a live install: the
# bed's observability test (under the bed's lock) records every panel's series from the real
# Prometheus into docs/operations/dashboard-data.json, then matplotlib draws them.
dashboard-pngs: testbin
    TSGW_DASHBOARD_DATA=docs/operations/dashboard-data.json flock /tmp/tsgw-bed.lock timeout 1500 python -m pytest -q -x -p no:cacheprovider tests/e2e/bed/test_observability.py
    python -m tools.dashboard_pngs docs/operations/dashboard-data.json docs/operations
