"""What importing the pure rooms really loads: translation must pull in no network or async
library, directly or through the libraries whose data types it uses (tsgw.xds's bootstrap and
Snapshot, tsgw.tailscale's ProxyConfig). import-linter checks the static graph; this checks the
interpreter, in a fresh process."""

from __future__ import annotations

import subprocess
import sys

import pytest

_IO = ("grpclib", "h2", "aiohttp", "anyio", "kubernetes_asyncio", "httpx")


@pytest.mark.parametrize("module", ["tsgw.translate", "tsgw.model", "tsgw.api", "tsgw.xds", "tsgw.tailscale"])
def test_importing_a_pure_room_loads_no_network_library(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {_IO!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"


def test_the_lazy_names_of_xds_and_tailscale_still_resolve() -> None:
    import tsgw.tailscale
    import tsgw.xds

    assert tsgw.xds.AdsServer.__name__ == "AdsServer"
    assert tsgw.tailscale.TailscaleClient.__name__ == "TailscaleClient"
    with pytest.raises(AttributeError):
        _ = tsgw.xds.NoSuchThing  # type: ignore[attr-defined]
