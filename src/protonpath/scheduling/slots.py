"""Outpatient consultation slots (pure: no Django, no I/O).

The consultation day is cut into fixed slots of ``SLOT_MINUTES`` from the opening time; a
consultation takes one or more consecutive slots. A slot can be booked when it lies inside the
opening hours of a working day (Monday to Friday, French public holidays closed, see
:mod:`protonpath.scheduling.calendar`), is not in the past and no other consultation of the
same doctor takes it. The database enforces the last rule (one row per doctor and slot); these
functions say which slots are free and why a proposed time is refused.

Times are timezone-aware :class:`datetime.datetime` values; opening hours are local wall-clock
times in ``tz`` (Europe/Paris for the department).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from protonpath.scheduling.calendar import french_public_holidays, is_working_day

#: Length of one consultation slot, minutes.
SLOT_MINUTES = 30

#: Consultation hours of the department: weekday (0 = Monday) -> opening periods, local time.
#: Source: seed page 000, "Outpatient consultations ... Monday to Friday, 8am to 6.30pm".
#: Used when the department app has no opening-hours record (see ``selectors.consultation_hours``).
CONSULTATION_HOURS: Mapping[int, tuple[tuple[time, time], ...]] = {
    weekday: ((time(8, 0), time(18, 30)),) for weekday in range(5)
}

#: Default length of each kind of consultation, minutes (ASSUMPTION: a first consultation
#: needs an hour: history, examination, consent; a follow-up half an hour).
DURATION_MINUTES: Mapping[str, int] = {"first": 60, "follow_up": 30}


@dataclass(frozen=True)
class Refusal:
    """Why a consultation cannot start at the time asked (``code`` is stable, ``detail`` is for logs)."""

    code: str
    detail: str = ""


def periods_on(
    day: date, hours: Mapping[int, Sequence[tuple[time, time]]]
) -> tuple[tuple[time, time], ...]:
    """Opening periods on ``day``: none on weekends, French public holidays or closed weekdays."""
    if not is_working_day(day):
        return ()
    return tuple(hours.get(day.weekday(), ()))


def is_public_holiday(day: date) -> bool:
    return day in french_public_holidays(day.year)


def slot_starts(
    day: date,
    hours: Mapping[int, Sequence[tuple[time, time]]],
    tz: tzinfo,
    duration_min: int,
    slot_min: int = SLOT_MINUTES,
) -> list[datetime]:
    """Every slot start on ``day`` at which a ``duration_min`` consultation ends by closing time."""
    starts = []
    for opening, closing in periods_on(day, hours):
        current = datetime.combine(day, opening, tzinfo=tz)
        end = datetime.combine(day, closing, tzinfo=tz)
        while current + timedelta(minutes=duration_min) <= end:
            starts.append(current)
            current += timedelta(minutes=slot_min)
    return starts


def slots_covering(
    start: datetime, duration_min: int, slot_min: int = SLOT_MINUTES
) -> list[datetime]:
    """The slot starts a consultation from ``start`` lasting ``duration_min`` occupies."""
    count = -(-duration_min // slot_min)
    return [start + timedelta(minutes=slot_min * k) for k in range(count)]


def refusal(
    start: datetime,
    duration_min: int,
    hours: Mapping[int, Sequence[tuple[time, time]]],
    now: datetime,
    tz: tzinfo,
    slot_min: int = SLOT_MINUTES,
) -> Refusal | None:
    """Why a consultation at ``start`` cannot be booked, or ``None`` if the time is acceptable.

    ``hours`` are wall-clock times in ``tz`` (the department's time zone).

    Checks, in order: a timezone-aware time, not in the past, a working day (weekend, French
    public holiday), inside the opening hours, on a slot boundary. Whether the doctor is free is
    left to :func:`free_slot_starts` and, finally, to the database.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        return Refusal("naive", "start time has no time zone")
    if duration_min <= 0 or duration_min % slot_min:
        return Refusal("duration", f"duration {duration_min} is not a multiple of {slot_min} min")
    if start <= now:
        return Refusal("past", "start time is in the past")
    local = start.astimezone(tz)
    day = local.date()
    if is_public_holiday(day):
        return Refusal("holiday", f"{day.isoformat()} is a public holiday")
    if day.weekday() >= 5:
        return Refusal("weekend", f"{day.isoformat()} is a weekend day")
    end = local + timedelta(minutes=duration_min)
    for opening, closing in periods_on(day, hours):
        period_start = datetime.combine(day, opening, tzinfo=local.tzinfo)
        period_end = datetime.combine(day, closing, tzinfo=local.tzinfo)
        if period_start <= local and end <= period_end:
            if (local - period_start) % timedelta(minutes=slot_min):
                return Refusal("boundary", f"start is not on a {slot_min}-minute slot")
            return None
    return Refusal("hours", "outside the consultation opening hours")


def free_slot_starts(
    day: date,
    hours: Mapping[int, Sequence[tuple[time, time]]],
    tz: tzinfo,
    duration_min: int,
    taken: Iterable[datetime],
    now: datetime,
    slot_min: int = SLOT_MINUTES,
) -> list[datetime]:
    """Starts on ``day`` where a ``duration_min`` consultation fits around the ``taken`` slots.

    ``taken`` are the slot starts already booked for the doctor (any time zone).
    """
    busy = {t.astimezone(tz) for t in taken}
    free = []
    for start in slot_starts(day, hours, tz, duration_min, slot_min):
        if start <= now:
            continue
        if any(s in busy for s in slots_covering(start, duration_min, slot_min)):
            continue
        free.append(start)
    return free


def next_open_days(
    start_day: date, hours: Mapping[int, Sequence[tuple[time, time]]], count: int
) -> list[date]:
    """The first ``count`` days on or after ``start_day`` with consultation hours."""
    days = []
    day = start_day
    for _ in range(count * 7 + 31):
        if periods_on(day, hours):
            days.append(day)
            if len(days) == count:
                break
        day += timedelta(days=1)
    return days
