"""The public surface of each library is curated: adding a name to ``__all__`` is a decision."""

import tsgw


def test_tsgw_exports_only_its_version() -> None:
    assert tsgw.__all__ == ["__version__"]
    assert isinstance(tsgw.__version__, str)
