"""tsgw.admin's public surface is curated."""

import tsgw.admin


def test_admin_exports_exactly_the_curated_names() -> None:
    assert sorted(tsgw.admin.__all__) == sorted(
        [
            "DEFAULT_ADDRESS",
            "AdminClient",
            "AdminError",
            "AdminNotFoundError",
            "AdminService",
            "AdminUnavailableError",
            "messages",
        ]
    )
    assert issubclass(tsgw.admin.AdminNotFoundError, tsgw.admin.AdminError)
    assert issubclass(tsgw.admin.AdminUnavailableError, tsgw.admin.AdminError)
