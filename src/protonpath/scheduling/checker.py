"""Independent checker of a gantry schedule, and its key figures.

Written apart from the solver on purpose: it shares only the data classes, recomputes
working days from the ``holidays`` package itself and checks every constraint booking by
booking, so a bug in the solver's model or grid does not hide in the check.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

import holidays

from protonpath.scheduling.model import (
    Booking,
    Course,
    GantryDay,
    Problem,
    Schedule,
    session_duration_min,
)


@dataclass(frozen=True)
class Violation:
    """One broken constraint: its name, the course concerned (if any) and what is wrong."""

    constraint: str
    course_id: str | None
    message: str


@dataclass(frozen=True)
class ScheduleMetrics:
    """Key figures of a schedule (waiting in working days from the ready date)."""

    course_count: int
    session_count: int
    gantry_utilisation: float
    mean_waiting_working_days: float
    max_waiting_working_days: int
    late_course_count: int
    sessions_outside_usual_window: int


class _Days:
    """Working days as the checker sees them."""

    def __init__(self, closed_dates: frozenset[date]):
        self.closed = closed_dates
        self.public_holidays: dict[int, set[date]] = {}

    def is_working(self, day: date) -> bool:
        if day.year not in self.public_holidays:
            self.public_holidays[day.year] = set(holidays.France(years=day.year))
        return (
            day.weekday() < 5
            and day not in self.public_holidays[day.year]
            and day not in self.closed
        )

    def next_working(self, day: date) -> date:
        day += timedelta(days=1)
        while not self.is_working(day):
            day += timedelta(days=1)
        return day

    def working_between(self, first: date, last: date) -> int:
        """Working days in ``[first, last)``."""
        count = 0
        day = first
        while day < last:
            count += self.is_working(day)
            day += timedelta(days=1)
        return count


def check_schedule(schedule: Schedule) -> list[Violation]:
    """Every constraint the schedule breaks (an empty list for a valid schedule)."""
    problem = schedule.problem
    days = _Days(problem.closed_dates)
    violations = []
    by_course: dict[str, list[Booking]] = defaultdict(list)
    for booking in schedule.bookings:
        by_course[booking.course_id].append(booking)
    known = {course.course_id for course in problem.courses}
    for course_id in by_course.keys() - known:
        violations.append(Violation("known course", course_id, "bookings of an unknown course"))
    for course in problem.courses:
        violations += _check_course(course, by_course.get(course.course_id, []), schedule, days)
    for booking in schedule.bookings:
        violations += _check_booking_day(booking, problem, days)
    violations += _check_overlaps(schedule)
    return violations


def _check_course(
    course: Course, bookings: list[Booking], schedule: Schedule, days: _Days
) -> list[Violation]:
    gantry_day = schedule.problem.gantry_day
    cid = course.course_id
    found = []
    bookings = sorted(bookings, key=lambda b: b.fraction_number)
    numbers = [b.fraction_number for b in bookings]
    expected = list(
        range(course.first_fraction_number, course.first_fraction_number + course.fraction_count)
    )
    if numbers != expected:
        return [Violation("fraction count", cid, f"fractions {numbers}, expected {expected}")]
    for previous, booking in zip(bookings, bookings[1:], strict=False):
        if booking.day != days.next_working(previous.day):
            found.append(
                Violation(
                    "consecutive working days",
                    cid,
                    f"fraction {booking.fraction_number} on {booking.day}, the working day after "
                    f"{previous.day} is {days.next_working(previous.day)}",
                )
            )
    first_day = bookings[0].day
    if first_day < course.ready_date:
        found.append(
            Violation("ready date", cid, f"starts {first_day} before ready {course.ready_date}")
        )
    if first_day > course.due_date:
        found.append(Violation("due date", cid, f"starts {first_day} after due {course.due_date}"))
    category = gantry_day.categories[course.category]
    usual = schedule.usual_start_min.get(cid)
    if usual is None:
        found.append(Violation("usual time", cid, "no usual start time reported"))
    elif course.usual_start_min is not None and usual != course.usual_start_min:
        found.append(
            Violation("usual time", cid, f"usual {usual} min, pinned {course.usual_start_min} min")
        )
    for booking in bookings:
        found += _check_session(course, category, booking, usual, gantry_day)
    return found


def _check_session(course, category, booking: Booking, usual, gantry_day: GantryDay):
    cid = course.course_id
    found = []
    expected = session_duration_min(gantry_day, course, booking.fraction_number)
    if booking.duration_min != expected:
        found.append(
            Violation(
                "session duration",
                cid,
                f"fraction {booking.fraction_number}: {booking.duration_min} min, expected {expected}",
            )
        )
    if booking.gantry_id != course.gantry_id:
        found.append(
            Violation("gantry", cid, f"on {booking.gantry_id}, course is for {course.gantry_id}")
        )
    if booking.start_min < gantry_day.opening_min or booking.end_min > gantry_day.closing_min:
        found.append(
            Violation(
                "opening hours", cid, f"{booking.day} {booking.start_min}-{booking.end_min} min"
            )
        )
    for block in gantry_day.qa_blocks:
        if booking.start_min < block.end_min and block.start_min < booking.end_min:
            found.append(Violation("QA block", cid, f"{booking.day}: overlaps {block.label}"))
    if category.anaesthesia and not (
        gantry_day.anaesthesia_earliest_start_min
        <= booking.start_min
        <= gantry_day.anaesthesia_latest_start_min
    ):
        found.append(
            Violation("anaesthesia slot", cid, f"{booking.day}: starts at {booking.start_min} min")
        )
    if usual is not None and abs(booking.start_min - usual) > gantry_day.max_start_shift_min:
        found.append(
            Violation(
                "start-time variation",
                cid,
                f"{booking.day}: {booking.start_min} min, usual {usual} min",
            )
        )
    return found


def _check_booking_day(booking: Booking, problem: Problem, days: _Days) -> list[Violation]:
    found = []
    if not days.is_working(booking.day):
        found.append(
            Violation("working day", booking.course_id, f"{booking.day} is not a working day")
        )
    if not problem.start_date <= booking.day <= problem.end_date:
        found.append(Violation("horizon", booking.course_id, f"{booking.day} outside the horizon"))
    if booking.gantry_id not in problem.gantry_ids:
        found.append(Violation("gantry", booking.course_id, f"unknown gantry {booking.gantry_id}"))
    return found


def _check_overlaps(schedule: Schedule) -> list[Violation]:
    """No two sessions, nor a session and a downtime, share a minute of one gantry."""
    problem = schedule.problem
    spans = defaultdict(list)
    for booking in problem.fixed_bookings:
        spans[booking.gantry_id, booking.day].append(
            (booking.start_min, booking.end_min, f"fixed session of {booking.course_id}", None)
        )
    for downtime in problem.downtimes:
        spans[downtime.gantry_id, downtime.day].append(
            (downtime.start_min, downtime.end_min, "downtime", None)
        )
    for booking in schedule.bookings:
        spans[booking.gantry_id, booking.day].append(
            (
                booking.start_min,
                booking.end_min,
                f"session of {booking.course_id}",
                booking.course_id,
            )
        )
    found = []
    for (gantry_id, day), items in spans.items():
        items.sort()
        latest_end, latest_label, latest_course = -1, "", None
        for start, end, label, course_id in items:
            blamed = course_id or latest_course
            if start < latest_end and blamed is not None:
                found.append(
                    Violation(
                        "no overlap", blamed, f"{gantry_id} {day}: {label} overlaps {latest_label}"
                    )
                )
            if end > latest_end:
                latest_end, latest_label, latest_course = end, label, course_id
    return found


def schedule_metrics(schedule: Schedule) -> ScheduleMetrics:
    """Utilisation, waiting and time-of-day figures of the placed courses.

    Utilisation is booked minutes over the open minutes outside QA blocks, on the working
    days from the horizon start to the last booked day, over all gantries.
    """
    problem = schedule.problem
    gantry_day = problem.gantry_day
    days = _Days(problem.closed_dates)
    firsts: dict[str, date] = {}
    for booking in schedule.bookings:
        if booking.course_id not in firsts or booking.day < firsts[booking.course_id]:
            firsts[booking.course_id] = booking.day
    waits = []
    late = 0
    for course in problem.courses:
        if course.course_id in firsts:
            first = firsts[course.course_id]
            waits.append(days.working_between(max(course.ready_date, problem.start_date), first))
            late += first > course.due_date
    outside = sum(
        abs(b.start_min - schedule.usual_start_min[b.course_id]) > gantry_day.usual_window_min
        for b in schedule.bookings
    )
    everything = problem.fixed_bookings + schedule.bookings
    last_day = max((b.day for b in everything), default=problem.start_date)
    open_min = (
        gantry_day.closing_min
        - gantry_day.opening_min
        - sum(block.end_min - block.start_min for block in gantry_day.qa_blocks)
    )
    capacity = days.working_between(problem.start_date, last_day + timedelta(days=1)) * open_min
    booked = sum(b.duration_min for b in everything)
    return ScheduleMetrics(
        course_count=len(firsts),
        session_count=len(schedule.bookings),
        gantry_utilisation=booked / (capacity * len(problem.gantry_ids)) if capacity else 0.0,
        mean_waiting_working_days=sum(waits) / len(waits) if waits else 0.0,
        max_waiting_working_days=max(waits, default=0),
        late_course_count=late,
        sessions_outside_usual_window=outside,
    )
