"""Bucket planning (fleetgate.core.timeseries) for the calendar intervals, against dates written out."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from fleetgate.core.errors import InvalidInput
from fleetgate.core.timeseries import Buckets, IntervalType, plan_buckets

NEW_YORK = ZoneInfo("America/New_York")


def ms(*fields: int, zone: ZoneInfo = NEW_YORK) -> int:
    return int(datetime(*fields, tzinfo=zone).timestamp() * 1000)  # type: ignore[misc]


def test_weeks_from_sunday_and_from_monday() -> None:
    # Wednesday 1 November 2023, noon, to Friday 24 November; DST ends on Sunday 5 November.
    start, end = ms(2023, 11, 1, 12), ms(2023, 11, 24)
    sunday = plan_buckets(start, end, None, IntervalType.WEEK, NEW_YORK)
    assert sunday.bounds == (start, ms(2023, 11, 5), ms(2023, 11, 12), ms(2023, 11, 19))
    monday = plan_buckets(start, end, None, IntervalType.WEEK_ISO, NEW_YORK)
    assert monday.bounds == (start, ms(2023, 11, 6), ms(2023, 11, 13), ms(2023, 11, 20))
    assert monday.span(3) == (ms(2023, 11, 20), end)
    assert monday.ts(0) == start + (ms(2023, 11, 6) - start) // 2


def test_quarters_and_months() -> None:
    start, end = ms(2023, 2, 10), ms(2024, 2, 1)
    quarters = plan_buckets(start, end, None, IntervalType.QUARTER, NEW_YORK)
    assert quarters.bounds == (start, ms(2023, 4, 1), ms(2023, 7, 1), ms(2023, 10, 1), ms(2024, 1, 1))
    months = plan_buckets(start, end, None, IntervalType.MONTH, NEW_YORK)
    assert months.bounds[1:3] == (ms(2023, 3, 1), ms(2023, 4, 1)) and len(months.bounds) == 12


def test_fixed_intervals_and_the_empty_range() -> None:
    assert plan_buckets(1000, 1000, 60_000, IntervalType.MILLISECONDS, None) == Buckets(1000, 1001, 60_000)
    buckets = plan_buckets(0, 150, 60, IntervalType.MILLISECONDS, None)
    assert [buckets.span(i) for i in range(3)] == [(0, 60), (60, 120), (120, 150)]
    assert [buckets.ts(i) for i in range(3)] == [30, 90, 135]
    # A time zone changes nothing for intervals that are not whole days.
    assert plan_buckets(0, 150, 60, IntervalType.MILLISECONDS, NEW_YORK) == buckets


def test_a_range_of_too_many_calendar_buckets_is_refused() -> None:
    with pytest.raises(InvalidInput):
        plan_buckets(0, ms(9999, 1, 1), None, IntervalType.WEEK, NEW_YORK)
