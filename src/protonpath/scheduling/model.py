"""Data of the gantry scheduling problem: plain frozen dataclasses, no Django, no I/O.

Time of day is counted in minutes after midnight (``start_min``); dates are
:class:`datetime.date`.  A *course* asks for ``fraction_count`` sessions on consecutive
working days; a *booking* is one placed session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any


@dataclass(frozen=True)
class InfeasibleReason:
    """Why one course cannot be placed.

    ``code`` names the constraint (``ready_after_due``, ``no_room``, ``late_start``...; see
    ``validation.py`` and ``solver.py``), ``message`` is the English sentence, ``params`` the
    values it quotes (JSON-ready: dates as ISO strings, times as ``"HH:MM"``), so that the web
    layer can say the same in another language from ``code`` and ``params``
    (``protonpath.scheduling.messages``).
    """

    course_id: str
    code: str
    message: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        return self.message


def infeasible_reason(course_id: str, code: str, message: str, **params: Any) -> InfeasibleReason:
    """An :class:`InfeasibleReason`; dates in ``params`` become ISO strings (as in ``message``)."""
    plain = {k: v.isoformat() if isinstance(v, date) else v for k, v in params.items()}
    return InfeasibleReason(course_id=course_id, code=code, message=message, params=plain)


class InfeasibleScheduleError(ValueError):
    """The courses cannot all be placed; ``reasons`` says which course and which constraint.

    ``reasons`` are the English sentences; ``items`` the same as :class:`InfeasibleReason`
    (course id, code, params). A reason given as a plain string has an empty code.
    """

    def __init__(self, reasons: Iterable[str | InfeasibleReason]):
        self.items = tuple(
            r if isinstance(r, InfeasibleReason) else InfeasibleReason("", "", str(r))
            for r in reasons
        )
        self.reasons = [item.message for item in self.items]
        super().__init__("Cannot schedule: " + "; ".join(self.reasons))

    def __reduce__(self):
        return type(self), (self.items,)


@dataclass(frozen=True)
class SessionCategory:
    """Session durations of an indication category (see ``data/gantry_day.toml``)."""

    key: str
    label: str
    session_duration_min: int
    first_session_duration_min: int
    anaesthesia: bool


@dataclass(frozen=True)
class TimeBlock:
    """A daily block of the gantry day, e.g. the morning machine QA."""

    label: str
    start_min: int
    end_min: int


@dataclass(frozen=True)
class Urgency:
    """Latest start after the ready date, and the cost of one waiting day."""

    name: str
    due_working_days: int
    waiting_weight: int


@dataclass(frozen=True)
class GantryDay:
    """Configuration of a treatment day on one gantry (same for every gantry)."""

    opening_min: int
    closing_min: int
    time_step_min: int
    qa_blocks: tuple[TimeBlock, ...]
    anaesthesia_earliest_start_min: int
    anaesthesia_latest_start_min: int
    max_start_shift_min: int
    usual_window_min: int
    categories: Mapping[str, SessionCategory]
    urgencies: Mapping[str, Urgency]
    source: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Course:
    """A request to place ``fraction_count`` sessions on consecutive working days.

    ``first_fraction_number`` > 1 marks the continuation of a course already under way
    (its sessions all have the standard duration); ``usual_start_min`` then pins the
    patient's usual time of day.  ``due_date`` is the latest date of the first session.
    """

    course_id: str
    category: str
    fraction_count: int
    ready_date: date
    due_date: date
    urgency: str = "standard"
    gantry_id: str = "G1"
    first_fraction_number: int = 1
    usual_start_min: int | None = None
    # Session lengths of this course when its plan sets them (treatment app: beam-on, layer
    # switching and setup time); None: the category's.
    session_min: int | None = None
    first_session_min: int | None = None


@dataclass(frozen=True)
class Booking:
    """One gantry session: ``day`` at ``start_min`` for ``duration_min`` minutes."""

    course_id: str
    fraction_number: int
    gantry_id: str
    day: date
    start_min: int
    duration_min: int
    announced: bool = False

    @property
    def end_min(self) -> int:
        return self.start_min + self.duration_min


@dataclass(frozen=True)
class Downtime:
    """The gantry is unavailable on ``day`` from ``start_min`` to ``end_min``."""

    gantry_id: str
    day: date
    start_min: int
    end_min: int
    reason: str = ""


@dataclass(frozen=True)
class Problem:
    """Everything the solver needs.

    ``fixed_bookings`` (announced or delivered sessions) are never moved; ``courses`` are
    placed between ``start_date`` and ``end_date`` (inclusive).  ``closed_dates`` are extra
    non-working days of the whole department (e.g. planned maintenance, a whole-day breakdown).
    """

    gantry_day: GantryDay
    courses: tuple[Course, ...]
    start_date: date
    end_date: date
    gantry_ids: tuple[str, ...] = ("G1",)
    fixed_bookings: tuple[Booking, ...] = ()
    downtimes: tuple[Downtime, ...] = ()
    closed_dates: frozenset[date] = frozenset()


@dataclass(frozen=True)
class Schedule:
    """A solution: the bookings of the placed courses (fixed bookings not repeated).

    ``usual_start_min`` maps each placed course to its usual time of day.
    """

    problem: Problem
    bookings: tuple[Booking, ...]
    usual_start_min: Mapping[str, int]
    method: str
    solve_time_s: float = 0.0

    def all_bookings(self) -> tuple[Booking, ...]:
        """Fixed bookings and placed bookings together, in time order."""
        everything = self.problem.fixed_bookings + self.bookings
        return tuple(sorted(everything, key=lambda b: (b.gantry_id, b.day, b.start_min)))

    def bookings_of(self, course_id: str) -> tuple[Booking, ...]:
        """All sessions of one course (fixed and placed), in date order."""
        return tuple(b for b in self.all_bookings() if b.course_id == course_id)

    def gantry_agenda(self, gantry_id: str, day: date) -> tuple[Booking, ...]:
        """The sessions of one gantry on one day, in time order."""
        return tuple(b for b in self.all_bookings() if b.gantry_id == gantry_id and b.day == day)


def session_duration_min(gantry_day: GantryDay, course: Course, fraction_number: int) -> int:
    """Duration of fraction ``fraction_number`` (1-based) of ``course``."""
    category = gantry_day.categories[course.category]
    if fraction_number == 1:
        return course.first_session_min or category.first_session_duration_min
    return course.session_min or category.session_duration_min


def start_window_min(gantry_day: GantryDay, course: Course, duration_min: int) -> tuple[int, int]:
    """Earliest and latest start (minutes after midnight) of a session of ``course``."""
    if gantry_day.categories[course.category].anaesthesia:
        return gantry_day.anaesthesia_earliest_start_min, gantry_day.anaesthesia_latest_start_min
    return gantry_day.opening_min, gantry_day.closing_min - duration_min


def anaesthesia_reserve_min(gantry_day: GantryDay) -> tuple[int, int]:
    """Start and end (minutes after midnight) of the early-morning anaesthesia slots."""
    longest = max(
        (c.first_session_duration_min for c in gantry_day.categories.values() if c.anaesthesia),
        default=0,
    )
    return (
        gantry_day.anaesthesia_earliest_start_min,
        gantry_day.anaesthesia_latest_start_min + longest,
    )
