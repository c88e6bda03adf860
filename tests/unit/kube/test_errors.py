"""HTTP statuses and watch ERROR events map onto one exception tree."""

from __future__ import annotations

import orjson
import pytest

from tsgw.kube import (
    AlreadyExists,
    APIError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ServerError,
    ServerTimeout,
    TooManyRequests,
)
from tsgw.kube._errors import error_from_response, error_from_status


@pytest.mark.parametrize(
    ("status", "reason", "cls"),
    [
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),
        (410, "Expired", Gone),
        (410, "Gone", Gone),
        (422, "Invalid", Invalid),
        (403, "Forbidden", Forbidden),
        (500, "InternalError", ServerError),
        (503, "ServiceUnavailable", ServerError),
        (504, "Timeout", ServerTimeout),
        (418, "", APIError),
    ],
)
def test_a_status_maps_to_its_class(status: int, reason: str, cls: type[APIError]) -> None:
    body = {"kind": "Status", "code": status, "reason": reason, "message": "m"}
    err = error_from_response(status, orjson.dumps(body))
    assert type(err) is cls
    assert err.status == status
    assert err.reason == reason


def test_429_carries_retry_after_from_the_header_or_the_status_details() -> None:
    err = error_from_response(429, b"{}", {"Retry-After": "3"})
    assert isinstance(err, TooManyRequests)
    assert err.retry_after == 3.0
    err2 = error_from_status(429, {"code": 429, "details": {"retryAfterSeconds": 7}})
    assert err2.retry_after == 7.0


def test_a_too_large_resource_version_is_recognised_from_its_cause() -> None:
    body = {
        "code": 504,
        "reason": "Timeout",
        "message": "x",
        "details": {"causes": [{"reason": "ResourceVersionTooLarge"}]},
    }
    err = error_from_status(504, body)
    assert isinstance(err, ServerTimeout)
    assert err.too_large_resource_version


def test_a_non_json_error_body_still_maps() -> None:
    err = error_from_response(502, b"<html>bad gateway</html>")
    assert isinstance(err, ServerError)
    assert "bad gateway" in err.message
