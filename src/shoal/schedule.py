"""Schedules: ``@app.function(schedule=Period(hours=1))`` or ``schedule=Cron("0 9 * * *", timezone=...)``.

The control plane fires them (see ``server/schedules.py``); what is decided here is *when*, as a pure function
:func:`next_fire` of the schedule, its anchor and a time, tested as a table.

* ``Period`` follows Modal: intervals are calendar arithmetic from the anchor (the deploy, or the start of an
  ephemeral app), like ``dateutil.relativedelta``: ``days=1`` fires at the same UTC time every day and
  ``months=1`` on the same day of every month (clamped to the month's last day). Redeploying resets it.
* ``Cron`` takes a standard 5-field expression (parsed by croniter) in an IANA time zone (default UTC), so
  ``Cron("0 6 * * *", timezone="America/New_York")`` runs at 6:00 New York time through DST changes.
"""

from __future__ import annotations

import datetime
import math
import zoneinfo
from dataclasses import dataclass
from typing import Any

from ._context import is_local
from .exception import InvalidError

# croniter and dateutil are imported where fire times are computed or specs checked: on the client and the
# server. A container only imports the user's module (which builds Period/Cron objects): it needs neither, and an
# image's environment has neither.

UTC = datetime.timezone.utc


class Schedule:
    """Base of :class:`Period` and :class:`Cron` (Modal's ``modal.schedule.Schedule``)."""

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError


MIN_PERIOD = 0.001  # seconds: a shorter period has no step on the clock's microseconds


@dataclass(frozen=True, init=False)
class Period(Schedule):
    """Run every given interval, counted from the deploy (or from the start of an ephemeral app).

    Only ``seconds`` may be a float. Raises InvalidError for a negative part or an empty period.
    """

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: float = 0

    def __init__(self, *, years: int = 0, months: int = 0, weeks: int = 0, days: int = 0, hours: int = 0,
                 minutes: int = 0, seconds: float = 0) -> None:  # fmt: skip
        whole = {"years": years, "months": months, "weeks": weeks, "days": days, "hours": hours, "minutes": minutes}
        for name, value in whole.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidError(f"Period({name}={value!r}): a whole number >= 0 is needed (only seconds may be "
                                   "a float).")  # fmt: skip
            object.__setattr__(self, name, value)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0 or math.isnan(seconds):
            raise InvalidError(f"Period(seconds={seconds!r}): a number >= 0 is needed.")
        object.__setattr__(self, "seconds", seconds)
        if not any(whole.values()) and seconds <= 0:
            raise InvalidError("Period() needs a positive interval, e.g. Period(hours=1).")
        fixed = weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + seconds
        if not years and not months and fixed < MIN_PERIOD:
            raise InvalidError(f"Period(seconds={seconds!r}) is shorter than a millisecond: nothing fires that often.")

    def spec(self) -> dict[str, Any]:
        return {"kind": "period", "years": self.years, "months": self.months, "weeks": self.weeks,
                "days": self.days, "hours": self.hours, "minutes": self.minutes, "seconds": self.seconds}  # fmt: skip


@dataclass(frozen=True)
class Cron(Schedule):
    """Run on a cron expression (``"minute hour day-of-month month day-of-week"``) in an IANA time zone.

    Raises InvalidError for an expression croniter cannot parse or an unknown time zone.
    """

    cron_string: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not is_local():  # checked where the app was registered
            return
        from croniter import croniter

        if (
            not isinstance(self.cron_string, str)
            or len(self.cron_string.split()) != 5
            or not croniter.is_valid(self.cron_string)
        ):
            raise InvalidError(f"Cron({self.cron_string!r}) is not a 5-field cron expression like '0 9 * * 1-5'.")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidError(f"Cron(timezone={self.timezone!r}) is not an IANA time zone like "
                               "'America/New_York'.") from exc  # fmt: skip

    def spec(self) -> dict[str, Any]:
        return {"kind": "cron", "cron": self.cron_string, "timezone": self.timezone}


def _period_step(spec: dict[str, Any], k: int) -> Any:
    from dateutil.relativedelta import relativedelta

    return relativedelta(
        years=spec["years"] * k, months=spec["months"] * k, weeks=spec["weeks"] * k, days=spec["days"] * k,
        hours=spec["hours"] * k, minutes=spec["minutes"] * k, seconds=spec["seconds"] * k,
    )  # fmt: skip


def next_fire(spec: dict[str, Any], anchor: float, after: float) -> float:
    """The first fire time strictly after ``after`` (POSIX seconds) of a schedule spec anchored at ``anchor``.

    A period fires at ``anchor + k * period`` (calendar arithmetic, k >= 1); a cron expression at its next match
    in its time zone.
    """
    if spec["kind"] == "cron":
        from croniter import croniter

        zone = zoneinfo.ZoneInfo(spec["timezone"])
        start = datetime.datetime.fromtimestamp(max(after, anchor), zone)
        nxt: datetime.datetime = croniter(spec["cron"], start).get_next(datetime.datetime)
        return nxt.timestamp()
    base = datetime.datetime.fromtimestamp(anchor, UTC)
    if not spec["years"] and not spec["months"]:  # fixed length: closed form
        step = (base + _period_step(spec, 1) - base).total_seconds()
        k = max(1, math.floor((after - anchor) / step) + 1)
    else:  # months vary in length: estimate, then walk
        step = (spec["years"] * 12 + spec["months"]) * 28 * 86400.0
        k = max(1, math.floor((after - anchor) / step) - 1)
    while (base + _period_step(spec, k)).timestamp() <= after:
        k += 1
    return float((base + _period_step(spec, k)).timestamp())


def from_spec(spec: dict[str, Any]) -> Schedule:
    """The schedule a spec describes (for display)."""
    if spec["kind"] == "cron":
        return Cron(spec["cron"], spec["timezone"])
    return Period(**{k: v for k, v in spec.items() if k != "kind"})


def describe(spec: dict[str, Any]) -> str:
    """``Cron('0 9 * * *', 'UTC')`` / ``Period(hours=1)`` in words for listings."""
    if spec["kind"] == "cron":
        return f"Cron({spec['cron']!r}, {spec['timezone']!r})"
    parts = ", ".join(f"{k}={v:g}" for k, v in spec.items() if k != "kind" and v)
    return f"Period({parts})"
