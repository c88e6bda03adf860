"""The memo of hook answers: bounded, least recently used evicted first, errors not remembered."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsgw.extension._memo import Memo


def test_an_answer_is_computed_once_per_request_and_the_oldest_is_evicted() -> None:
    computed: list[bytes] = []

    def compute(request: bytes) -> bytes:
        computed.append(request)
        return request.upper()

    memo = Memo(2)
    assert memo.answer(b"a", compute) == b"A"
    assert memo.answer(b"b", compute) == b"B"
    assert memo.answer(b"a", compute) == b"A"  # a is now the most recently used
    assert memo.answer(b"c", compute) == b"C"  # evicts b
    assert memo.answer(b"a", compute) == b"A"
    assert memo.answer(b"b", compute) == b"B"  # computed again
    assert computed == [b"a", b"b", b"c", b"b"]
    assert (memo.stats.hits, memo.stats.misses, memo.stats.evictions, len(memo)) == (2, 4, 2, 2)


def test_an_error_propagates_and_nothing_is_remembered() -> None:
    memo = Memo(4)

    def fail(request: bytes) -> bytes:
        raise ValueError("no answer")

    with pytest.raises(ValueError, match="no answer"):
        memo.answer(b"x", fail)
    assert len(memo) == 0
    assert memo.answer(b"x", bytes.upper) == b"X"


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Memo(0)


@given(st.lists(st.binary(max_size=4), max_size=60), st.integers(min_value=1, max_value=5))
def test_answers_are_those_of_the_function_and_the_size_stays_bounded(
    requests: list[bytes], capacity: int
) -> None:
    memo = Memo(capacity)
    for r in requests:
        assert memo.answer(r, lambda b: b[::-1] + b"!") == r[::-1] + b"!"
        assert len(memo) <= capacity
    assert memo.stats.hits + memo.stats.misses == len(requests)
