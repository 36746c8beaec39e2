"""Changes to a live schedule: a new course, a machine downtime, a missed session.

Each function takes a :class:`Schedule` and returns a new one whose ``problem`` holds every
session that did not move as ``fixed_bookings`` and whose ``bookings`` are the sessions just
placed; ``Schedule.all_bookings()`` is the whole live schedule afterwards.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta

from protonpath.scheduling.calendar import add_working_days
from protonpath.scheduling.model import Booking, Course, Downtime, Problem, Schedule
from protonpath.scheduling.occupancy import occupancies_for
from protonpath.scheduling.solver import SolverOptions, solve
from protonpath.scheduling.validation import validate_problem

# A continuation (fractions pushed to the end of a course) should start within this many
# working days of the course's last session; later is allowed but reported as late.
CONTINUATION_SLACK_WORKING_DAYS = 2


def earliest_start(problem: Problem, course: Course) -> date | None:
    """The earliest date on which ``course`` could start around ``problem``'s fixed sessions.

    Other courses of ``problem`` are ignored; the due date is ignored.  ``None`` if the course
    fits nowhere before the end of the horizon.

    Raises
    ------
    InfeasibleScheduleError
        If the course itself is invalid (unknown category, window too short...).
    """
    probe = dataclasses.replace(
        problem, courses=(dataclasses.replace(course, due_date=problem.end_date),)
    )
    validate_problem(probe)
    calendar, grids = occupancies_for(probe)
    grid = grids[course.gantry_id]
    placement = grid.first_fit(course, grid.ready_day(course))
    if placement is None:
        return None
    return calendar.days[placement.start_day_index]


def add_course(
    schedule: Schedule,
    course: Course,
    *,
    allow_moving: bool = False,
    options: SolverOptions | None = None,
) -> Schedule:
    """Place a new course into a live schedule.

    Without ``allow_moving`` every existing session stays put.  With it, courses whose
    sessions are none of them announced may be placed again together with the new one.
    """
    existing = schedule.all_bookings()
    movable: set[str] = set()
    if allow_moving:
        # Only whole courses placed by this schedule, none of whose sessions is announced.
        announced = {b.course_id for b in existing if b.announced}
        partly_fixed = {b.course_id for b in schedule.problem.fixed_bookings}
        whole = {c.course_id for c in schedule.problem.courses if c.first_fraction_number == 1}
        movable = whole - announced - partly_fixed
    courses = [c for c in schedule.problem.courses if c.course_id in movable] + [course]
    problem = dataclasses.replace(
        schedule.problem,
        courses=tuple(courses),
        fixed_bookings=tuple(b for b in existing if b.course_id not in movable),
    )
    return solve(problem, options)


def reschedule_after_downtime(
    schedule: Schedule,
    downtimes: Iterable[Downtime],
    *,
    options: SolverOptions | None = None,
) -> Schedule:
    """Cancel the sessions a downtime hits and push each to the end of its course.

    A course that loses its first session has not started: it is placed again from the day
    after the downtime.  Due dates may then be missed (the result reports it, nothing raises).
    """
    downtimes = tuple(downtimes)
    lost = [
        booking
        for booking in schedule.all_bookings()
        if any(_overlaps(booking, downtime) for downtime in downtimes)
    ]
    return _push_to_end(schedule, lost, downtimes, options)


def reschedule_after_missed_session(
    schedule: Schedule,
    course_id: str,
    day: date,
    *,
    options: SolverOptions | None = None,
) -> Schedule:
    """The patient missed the session of ``day``: add one after the course's last day."""
    lost = [b for b in schedule.all_bookings() if b.course_id == course_id and b.day == day]
    if not lost:
        raise ValueError(f"course {course_id} has no session on {day}")
    return _push_to_end(schedule, lost, (), options)


def _overlaps(booking: Booking, downtime: Downtime) -> bool:
    return (
        booking.gantry_id == downtime.gantry_id
        and booking.day == downtime.day
        and booking.start_min < downtime.end_min
        and downtime.start_min < booking.end_min
    )


def _push_to_end(
    schedule: Schedule,
    lost: list[Booking],
    downtimes: tuple[Downtime, ...],
    options: SolverOptions | None,
) -> Schedule:
    problem = schedule.problem
    lost_keys = {(b.course_id, b.day, b.start_min) for b in lost}
    kept_by_course: dict[str, list[Booking]] = defaultdict(list)
    for booking in schedule.all_bookings():
        if (booking.course_id, booking.day, booking.start_min) not in lost_keys:
            kept_by_course[booking.course_id].append(booking)
    lost_by_course: dict[str, list[Booking]] = defaultdict(list)
    for booking in lost:
        lost_by_course[booking.course_id].append(booking)
    definitions = {c.course_id: c for c in problem.courses}
    last_lost_day = max(b.day for b in lost) if lost else problem.start_date

    fixed, courses = [], []
    for course_id, kept in kept_by_course.items():
        if course_id not in lost_by_course:
            fixed.extend(kept)
    for course_id, missing in lost_by_course.items():
        kept = sorted(kept_by_course.get(course_id, []), key=lambda b: (b.day, b.start_min))
        original = definitions.get(course_id)
        if any(b.fraction_number == 1 for b in missing) and original is not None:
            # Not started: place the whole course again, after the lost day.
            ready = max(original.ready_date, last_lost_day + timedelta(days=1))
            courses.append(dataclasses.replace(original, ready_date=ready))
            continue
        renumbered = [
            dataclasses.replace(b, fraction_number=number)
            for number, b in enumerate(kept, start=min(b.fraction_number for b in kept + missing))
        ]
        fixed.extend(renumbered)
        courses.append(_continuation(schedule, course_id, renumbered, missing, last_lost_day))
    new_problem = dataclasses.replace(
        problem,
        courses=tuple(courses),
        fixed_bookings=tuple(fixed),
        downtimes=problem.downtimes + downtimes,
    )
    options = dataclasses.replace(options or SolverOptions(), allow_late=True)
    return solve(new_problem, options)


def _continuation(
    schedule: Schedule,
    course_id: str,
    kept: list[Booking],
    missing: list[Booking],
    last_lost_day: date,
) -> Course:
    """The fractions of a course under way pushed after its last remaining session."""
    problem = schedule.problem
    reference = missing[0]
    last_day = max([b.day for b in kept] + [last_lost_day])
    ready = add_working_days(last_day + timedelta(days=1), 0, problem.closed_dates)
    category = _category_of(schedule, course_id, reference)
    usual = schedule.usual_start_min.get(course_id)
    if usual is None and kept:
        # Sessions placed by an earlier schedule: the patient's usual time is their median.
        usual = sorted(b.start_min for b in kept)[len(kept) // 2]
    return Course(
        course_id=course_id,
        category=category,
        fraction_count=len(missing),
        ready_date=ready,
        due_date=add_working_days(ready, CONTINUATION_SLACK_WORKING_DAYS, problem.closed_dates),
        gantry_id=reference.gantry_id,
        first_fraction_number=(kept[-1].fraction_number + 1) if kept else 2,
        usual_start_min=usual,
    )


def _category_of(schedule: Schedule, course_id: str, booking: Booking) -> str:
    """The indication category of a course, from its definition or its session duration."""
    for course in schedule.problem.courses:
        if course.course_id == course_id:
            return course.category
    for category in schedule.problem.gantry_day.categories.values():
        if category.session_duration_min == booking.duration_min:
            return category.key
    raise ValueError(f"course {course_id}: cannot tell its indication category")
