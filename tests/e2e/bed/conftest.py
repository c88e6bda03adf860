"""One bed for the bed's own tests: 2 nodes, CoreDNS, kube-proxy and a Headscale tailnet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bed import Bed, BedOptions
from tests.e2e.bed.helpers import assert_bed_gone


@pytest.fixture(scope="session")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    b = Bed(tmp_path_factory.mktemp("bed"), BedOptions(nodes=2, backoff_base=2.0, tailnet=True))
    b.start()
    try:
        yield b
    finally:
        b.stop()
    assert_bed_gone(b)
