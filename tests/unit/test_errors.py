"""Unit tests of the product's exception types that carry values callers act on."""

from __future__ import annotations

import pytest

from shared.errors import MAX_RETRY_AFTER_S, ThrottledError
from shared.triggers._http import error_response


@pytest.mark.parametrize(
    ("wait", "delay"),
    [
        (float("inf"), MAX_RETRY_AFTER_S),
        (float("nan"), MAX_RETRY_AFTER_S),
        (1e300, MAX_RETRY_AFTER_S),
        (-3.0, 1),
        (0.0, 1),
        (1.2, 2),
        (120.0, 120),
    ],
)
def test_throttled_error_delay_is_a_whole_second_count_within_the_cap(wait, delay):
    """Any wait, even infinite or not a number, becomes 1 s to an hour, rounded up."""
    # GIVEN a throttling error carrying the wait
    error = ThrottledError("429", retry_after_s=wait)

    # WHEN its delay is read THEN it is whole seconds within bounds, and the wait is finite
    assert error.delay_s == delay
    assert 0.0 <= error.retry_after_s <= MAX_RETRY_AFTER_S


def test_http_error_response_to_an_infinite_throttle_says_retry_after_an_hour():
    """An API answer to throttling past counting carries Retry-After of the cap, not a crash."""
    # GIVEN a throttling error whose wait is infinite
    error = ThrottledError("429", retry_after_s=float("inf"))

    # WHEN it becomes an HTTP answer
    answer = error_response(error)

    # THEN the answer is 503 (the service is busy) with a Retry-After of the cap
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == str(MAX_RETRY_AFTER_S)
