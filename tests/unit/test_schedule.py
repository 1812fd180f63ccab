"""When schedules fire: a pure function, tested as a table (time zones, DST changes, month ends)."""

from __future__ import annotations

import datetime

import pytest

from shoal.exception import InvalidError
from shoal.schedule import Cron, Period, next_fire

UTC = datetime.timezone.utc


def ts(text: str) -> float:
    """A UTC time like '2026-03-08 06:30'."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()


def at(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize(
    ("schedule", "anchor", "after", "expected"),
    [
        # periods count from the anchor, strictly after `after`
        (Period(hours=1), "2026-01-01 00:00", "2026-01-01 00:00", "2026-01-01 01:00:00"),
        (Period(hours=1), "2026-01-01 00:00", "2026-01-01 05:30", "2026-01-01 06:00:00"),
        (Period(minutes=15), "2026-01-01 00:07", "2026-01-01 00:07", "2026-01-01 00:22:00"),
        (Period(days=1), "2026-03-07 09:00", "2026-03-09 10:00", "2026-03-10 09:00:00"),
        (Period(weeks=1, days=1), "2026-01-01 00:00", "2026-01-01 00:00", "2026-01-09 00:00:00"),
        # months and years are calendar arithmetic: Jan 31 + 1 month is Feb 28 (clamped), + 2 months Mar 31
        (Period(months=1), "2026-01-31 12:00", "2026-01-31 12:00", "2026-02-28 12:00:00"),
        (Period(months=1), "2026-01-31 12:00", "2026-02-28 12:00", "2026-03-31 12:00:00"),
        (Period(years=1), "2024-02-29 00:00", "2024-03-01 00:00", "2025-02-28 00:00:00"),
        # cron in UTC
        (Cron("0 9 * * *"), "2026-01-01 00:00", "2026-01-01 08:59", "2026-01-01 09:00:00"),
        (Cron("0 9 * * *"), "2026-01-01 00:00", "2026-01-01 09:00", "2026-01-02 09:00:00"),
        (Cron("*/15 * * * *"), "2026-01-01 00:00", "2026-01-01 00:31", "2026-01-01 00:45:00"),
        (Cron("0 0 1 * *"), "2026-01-01 00:00", "2026-01-31 23:00", "2026-02-01 00:00:00"),
        (Cron("0 9 * * 1-5"), "2026-01-01 00:00", "2026-01-02 10:00", "2026-01-05 09:00:00"),  # Fri -> Mon
        # cron in a time zone, across DST: 06:00 New York is 11:00 UTC in winter, 10:00 UTC in summer
        (Cron("0 6 * * *", "America/New_York"), "2026-01-01 00:00", "2026-03-07 12:00", "2026-03-08 10:00:00"),
        (Cron("0 6 * * *", "America/New_York"), "2026-01-01 00:00", "2026-03-06 12:00", "2026-03-07 11:00:00"),
        (Cron("0 6 * * *", "America/New_York"), "2026-01-01 00:00", "2026-10-31 12:00", "2026-11-01 11:00:00"),
        # a cron never fires before its anchor (the deploy)
        (Cron("0 9 * * *"), "2026-06-01 10:00", "2026-01-01 00:00", "2026-06-02 09:00:00"),
    ],
)  # fmt: skip
def test_next_fire(schedule, anchor: str, after: str, expected: str):  # noqa: ANN001
    assert at(next_fire(schedule.spec(), ts(anchor), ts(after))) == expected


def test_float_seconds_periods_are_exact():
    t0 = ts("2026-01-01 00:00")
    assert next_fire(Period(seconds=0.5).spec(), t0, t0 + 1.2) == pytest.approx(t0 + 1.5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Period(), "positive interval"),
        (lambda: Period(hours=-1), "whole number"),
        (lambda: Period(days=1.5), "whole number"),
        (lambda: Cron("every day"), "5-field"),
        (lambda: Cron("61 * * * *"), "5-field"),
        (lambda: Cron("0 9 * * *", timezone="Mars/Olympus"), "IANA"),
    ],
)
def test_bad_schedules_are_clear_errors(make, message: str):  # noqa: ANN001
    with pytest.raises(InvalidError, match=message):
        make()


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "spec, message",
    [
        ({"seconds": -5}, "seconds=-5"),
        ({"hours": -1}, "hours=-1"),
        ({"seconds": 1e-9}, "shorter than a millisecond"),
        ({"seconds": float("nan")}, "seconds=nan"),
    ],
)
def test_a_bad_period_sent_by_hand_is_refused_by_the_server_at_once(spec: dict, message: str):  # noqa: ANN001
    from shoal.server.control import check_schedule
    from shoal.server.errors import Invalid

    full = {"kind": "period", "years": 0, "months": 0, "weeks": 0, "days": 0, "hours": 0, "minutes": 0, "seconds": 0}
    with pytest.raises(Invalid, match=message):
        check_schedule({**full, **spec})
