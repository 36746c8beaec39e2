"""Stay periods, and the expected stay of a course of proton therapy in Caen.

Treatment sessions (fractions) are given on working days: Monday to Friday, except French
public holidays (the ``holidays`` package; Caen, in Normandy, has no regional holiday).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import holidays

MONDAY_TO_FRIDAY = frozenset({0, 1, 2, 3, 4})
"""Weekdays (``date.weekday()``) on which the gantry treats patients."""


@dataclass(frozen=True)
class StayPeriod:
    """Days spent in a place, both ends included (the days of arrival and departure count).

    Attributes
    ----------
    first_day : datetime.date
        Day of arrival.
    last_day : datetime.date
        Day of departure, on or after ``first_day``.
    """

    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        for name in ("first_day", "last_day"):
            value = getattr(self, name)
            # datetime is a subclass of date, and would make day counts silently wrong.
            if not isinstance(value, date) or isinstance(value, datetime):
                raise TypeError(f"{name} must be a datetime.date, got {type(value).__name__}.")
        if self.last_day < self.first_day:
            raise ValueError(
                f"A stay cannot end ({self.last_day.isoformat()}) before it starts "
                f"({self.first_day.isoformat()})."
            )

    @property
    def days(self) -> int:
        """Number of calendar days of presence, arrival and departure included."""
        return (self.last_day - self.first_day).days + 1

    @property
    def nights(self) -> int:
        """Number of nights spent (one fewer than the days)."""
        return (self.last_day - self.first_day).days

    def dates(self) -> Iterator[date]:
        """Yield every day of the stay, in order."""
        for offset in range(self.days):
            yield self.first_day + timedelta(days=offset)


@dataclass(frozen=True)
class ExpectedStay:
    """The expected stay of a patient treated in Caen.

    Attributes
    ----------
    stay : StayPeriod
        From arrival (before the first consultation) to departure (after the last fraction).
    first_consultation_day : datetime.date
        Consultation and planning imaging.
    fraction_days : tuple of datetime.date
        The day of each fraction, in order.
    """

    stay: StayPeriod
    first_consultation_day: date
    fraction_days: tuple[date, ...]

    @property
    def first_fraction_day(self) -> date:
        """Day of the first fraction."""
        return self.fraction_days[0]

    @property
    def last_fraction_day(self) -> date:
        """Day of the last fraction."""
        return self.fraction_days[-1]


def french_public_holidays(years: Collection[int]) -> frozenset[date]:
    """Return the French (metropolitan) public holidays of the given years."""
    return frozenset(holidays.France(years=sorted(years)).keys())


def is_working_day(
    day: date,
    closed_days: Collection[date],
    weekdays: Collection[int] = MONDAY_TO_FRIDAY,
) -> bool:
    """Tell whether the department treats patients on ``day``."""
    return day.weekday() in weekdays and day not in closed_days


def working_days_after(
    start: date,
    count: int,
    closed_days: Collection[date],
    weekdays: Collection[int] = MONDAY_TO_FRIDAY,
) -> tuple[date, ...]:
    """Return the first ``count`` working days strictly after ``start``."""
    if count < 0:
        raise ValueError(f"count must be zero or more, got {count}.")
    if not weekdays:
        raise ValueError("At least one weekday must be a working day.")
    found: list[date] = []
    day = start
    while len(found) < count:
        day += timedelta(days=1)
        if is_working_day(day, closed_days, weekdays):
            found.append(day)
    return tuple(found)


def expected_stay(
    first_consultation_day: date,
    fractions: int,
    *,
    planning_working_days: int = 10,
    arrival_days_before: int = 1,
    departure_days_after: int = 1,
    closed_days: Collection[date] | None = None,
    weekdays: Collection[int] = MONDAY_TO_FRIDAY,
) -> ExpectedStay:
    """Compute the expected stay of a course of ``fractions`` daily sessions.

    Parameters
    ----------
    first_consultation_day : datetime.date
        Day of the first consultation and of the planning imaging; must be a working day.
    fractions : int
        Number of fractions of the accepted indication, one per working day.
    planning_working_days : int
        The first fraction is given on this working day after the consultation (treatment
        planning and its quality assurance happen in between). At least 1.
    arrival_days_before, departure_days_after : int
        Calendar days between arrival and the consultation, and between the last fraction and
        departure.
    closed_days : collection of datetime.date, optional
        Days without treatment besides weekends; French public holidays by default.
    weekdays : collection of int
        Weekdays with treatment (``date.weekday()``), Monday to Friday by default.

    Returns
    -------
    ExpectedStay
    """
    if fractions < 1:
        raise ValueError(f"A course has at least one fraction, got {fractions}.")
    if planning_working_days < 1:
        raise ValueError(f"planning_working_days must be at least 1, got {planning_working_days}.")
    if arrival_days_before < 0 or departure_days_after < 0:
        raise ValueError("arrival_days_before and departure_days_after must be zero or more.")
    if closed_days is None:
        # A course with its planning lasts well under two years.
        closed_days = french_public_holidays(
            range(first_consultation_day.year, first_consultation_day.year + 3)
        )
    if not is_working_day(first_consultation_day, closed_days, weekdays):
        raise ValueError(
            f"{first_consultation_day.isoformat()} is not a working day of the department."
        )
    days = working_days_after(
        first_consultation_day, planning_working_days - 1 + fractions, closed_days, weekdays
    )
    fraction_days = days[planning_working_days - 1 :]
    stay = StayPeriod(
        first_day=first_consultation_day - timedelta(days=arrival_days_before),
        last_day=fraction_days[-1] + timedelta(days=departure_days_after),
    )
    return ExpectedStay(
        stay=stay, first_consultation_day=first_consultation_day, fraction_days=fraction_days
    )
