"""Working days of the department: Monday to Friday, French public holidays closed."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

import holidays


@cache
def french_public_holidays(year: int) -> frozenset[date]:
    """Public holidays of metropolitan France in ``year`` (from the ``holidays`` package)."""
    return frozenset(holidays.France(years=year).keys())


def is_working_day(day: date, closed_dates: frozenset[date] = frozenset()) -> bool:
    """True on a weekday that is neither a French public holiday nor a closed date."""
    return (
        day.weekday() < 5
        and day not in french_public_holidays(day.year)
        and day not in closed_dates
    )


@dataclass(frozen=True)
class WorkingCalendar:
    """The working days between two dates, numbered 0, 1, 2, ... in order."""

    days: tuple[date, ...]

    @classmethod
    def between(
        cls, start_date: date, end_date: date, closed_dates: frozenset[date] = frozenset()
    ) -> WorkingCalendar:
        """Working days from ``start_date`` to ``end_date`` inclusive."""
        count = (end_date - start_date).days + 1
        every_day = (start_date + timedelta(days=offset) for offset in range(count))
        return cls(tuple(day for day in every_day if is_working_day(day, closed_dates)))

    def __len__(self) -> int:
        return len(self.days)

    def index_on_or_after(self, day: date) -> int:
        """Index of the first working day on or after ``day`` (``len(self)`` if none)."""
        return bisect.bisect_left(self.days, day)

    def index_on_or_before(self, day: date) -> int:
        """Index of the last working day on or before ``day`` (-1 if none)."""
        return bisect.bisect_right(self.days, day) - 1

    def index_of(self, day: date) -> int:
        """Index of a working day; ``KeyError`` if ``day`` is not one."""
        index = self.index_on_or_after(day)
        if index == len(self.days) or self.days[index] != day:
            raise KeyError(f"{day.isoformat()} is not a working day")
        return index


def add_working_days(day: date, count: int, closed_dates: frozenset[date] = frozenset()) -> date:
    """The working day ``count`` working days after ``day`` (``count`` >= 0).

    With ``count == 0`` this is ``day`` itself if it is a working day, else the next one.
    """
    current = day
    while not is_working_day(current, closed_dates):
        current += timedelta(days=1)
    for _ in range(count):
        current += timedelta(days=1)
        while not is_working_day(current, closed_dates):
            current += timedelta(days=1)
    return current


def due_date_for(ready_date: date, due_working_days: int, closed_dates=frozenset()) -> date:
    """Latest first-session date: ``due_working_days`` working days after ``ready_date``.

    ``due_working_days`` comes from the course's urgency
    (``GantryDay.urgencies[name].due_working_days``).
    """
    return add_working_days(ready_date, due_working_days, closed_dates)
