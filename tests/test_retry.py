"""seismo.retry: the one backoff and the one Retry-After parser."""

from __future__ import annotations

import random
from email.utils import format_datetime, parsedate_to_datetime

import pytest

from seismo.retry import equal_jitter, retry_after


def test_equal_jitter_is_between_half_and_all_of_the_capped_exponential() -> None:
    rng = random.Random(3)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (40, 5.0)]:
        delays = {equal_jitter(attempt, 1.0, 5.0, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1


def test_equal_jitter_with_the_same_seed_repeats() -> None:
    a = [equal_jitter(i, 0.5, 60.0, random.Random(9)) for i in range(6)]
    b = [equal_jitter(i, 0.5, 60.0, random.Random(9)) for i in range(6)]
    assert a == b


def test_retry_after_reads_delay_seconds() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(" 7 ") == 7.0
    assert retry_after("1.5") == 1.5
    assert retry_after("-3") == 0.0  # never negative


def test_retry_after_reads_an_http_date_against_the_given_clock() -> None:
    when = parsedate_to_datetime("Wed, 21 Oct 2026 07:28:00 GMT").timestamp()
    assert retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now=when - 90) == 90.0
    assert retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now=when + 5) == 0.0  # past: now
    assert retry_after("Wed, 21 Oct 2026 07:28:00 -0000", now=when - 1) == 1.0
    shown = format_datetime(parsedate_to_datetime("Thu, 01 Jan 1970 00:01:40 GMT"), usegmt=True)
    assert retry_after(shown, now=40) == 60.0


@pytest.mark.parametrize("value", [None, "", "  ", "soon", "nan", "inf", "Wed, 99 Foo", "1 2 3"])
def test_retry_after_is_none_for_a_missing_or_garbage_header(value: str | None) -> None:
    assert retry_after(value, now=0) is None
