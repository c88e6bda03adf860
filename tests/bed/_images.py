"""The bed's image table: which local program stands in for which container image.

There is no registry and no image filesystem here, so an image is only a name for an entry point
and a default command, as an image's ``ENTRYPOINT`` and ``CMD`` would be. ``command`` in a
container replaces the entry point (and drops the default command), ``args`` replaces the default
command, exactly as Kubernetes applies them to a real image. An image not in the table fails the
pod the way an image that cannot be pulled does (``ErrImagePull``, then ``ImagePullBackOff``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = ROOT / ".venv" / "bin"

#: The image of the bed's own test server (HTTP, gRPC and raw TCP answering with the pod name).
BACKEND_IMAGE = "bed.test/backend:1"
#: A shell-ish image: its default command sleeps, so tests give it a ``command``.
SHELL_IMAGE = "bed.test/shell:1"


@dataclass(frozen=True)
class Image:
    """What an image runs: entry point, default command, extra PATH entries and environment."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    """Directories put first on the container's PATH (for example tailscaled next to containerboot)."""
    env: dict[str, str] = field(default_factory=dict)


class UnknownImage(LookupError):
    """No local program stands in for this image."""


def _bin(name: str) -> str:
    from tools.testbin import bin_path

    return str(bin_path(name))


def _python() -> str:
    venv = VENV_BIN / "python"
    return str(venv if venv.exists() else Path(sys.executable))


def _backend() -> Image:
    return Image((_python(), "-m", "tests.bed.backend"), env={"PYTHONPATH": str(ROOT)})


def _shell() -> Image:
    return Image((), ("sleep", "infinity"))


def _tailscale() -> Image:
    boot = _bin("containerboot")
    return Image((boot,), path=(str(Path(_bin("tailscaled")).parent), str(Path(_bin("tailscale")).parent)))


def _coredns() -> Image:
    return Image((_bin("coredns"),))


def _envoy() -> Image:
    # On PATH too: Envoy Gateway's Envoy Deployments run `command: [envoy]`.
    envoy = _bin("envoy")
    return Image((envoy,), ("-c", "/etc/envoy/envoy.yaml"), path=(str(Path(envoy).parent),))


def _envoy_gateway() -> Image:
    # One binary is Envoy Gateway's controller (the image's entry point), its certgen Job
    # (`command: [envoy-gateway, certgen]`) and its Envoys' shutdown-manager container
    # (`command: [envoy-gateway]`): on PATH as well.
    eg = _bin("envoy-gateway")
    return Image((eg,), path=(str(Path(eg).parent),))


def _tsgw() -> Image:
    # The operator image's own file tree (tools/image_tree.py; the Containerfile copies it), run
    # as the image runs it: its bin/tsgw with the shebang's flags, by the Python it was built for
    # (the image's is /usr/bin/python3 of the same minor version). Built on first use, then cached.
    from tools import image_tree

    entry = image_tree.ensure() / "bin" / "tsgw"
    return Image((str(image_tree.interpreter()), *image_tree.interpreter_flags(), str(entry)))


# Matched against the image reference without its tag or digest; first match wins.
_TABLE: list[tuple[re.Pattern[str], object]] = [
    (re.compile(r"^bed\.test/backend$"), _backend),
    (re.compile(r"^(bed\.test/shell|(docker\.io/)?(library/)?busybox)$"), _shell),
    (re.compile(r"^((ghcr\.io|docker\.io)/)?tailscale/tailscale$"), _tailscale),
    (re.compile(r"^((registry\.k8s\.io|docker\.io)/)?coredns/coredns$"), _coredns),
    (re.compile(r"^((docker\.io)/)?envoyproxy/envoy(-distroless)?$"), _envoy),
    # The controller's release image and the shutdown manager's default (`gateway-dev:latest`).
    (re.compile(r"^((docker\.io)/)?envoyproxy/gateway(-dev)?$"), _envoy_gateway),
    (re.compile(r"^(.*/)?tsgw$"), _tsgw),
]


def repository(image: str) -> str:
    """``ghcr.io/x/y:tag@sha256:..`` → ``ghcr.io/x/y``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name.rsplit(":", 1)[0]
    return name


def resolve(image: str) -> Image:
    """The local stand-in for ``image``; raises :class:`UnknownImage` (the pod's ErrImagePull)."""
    repo = repository(image)
    for pattern, make in _TABLE:
        if pattern.match(repo):
            return make()  # type: ignore[operator, no-any-return]
    raise UnknownImage(f'image "{image}" is not in the test bed\'s image table (tests/bed/_images.py)')


def argv(image: Image, command: list[str] | None, args: list[str] | None) -> list[str]:
    """Kubernetes' rule: ``command`` replaces ENTRYPOINT and drops CMD; ``args`` replaces CMD."""
    if command:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args or image.cmd)]
