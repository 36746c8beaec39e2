"""The independent checker finds each broken constraint in a hand-made schedule."""

import dataclasses
from datetime import date

import pytest

from protonpath.scheduling.checker import check_schedule, schedule_metrics
from protonpath.scheduling.config import clock_to_min, default_gantry_day
from protonpath.scheduling.model import Booking, Course, Downtime, Problem, Schedule

NINE = clock_to_min("09:00")


def valid_schedule(**problem_extra):
    """A 3-fraction adult course at 09:00 from Monday 13 July 2026 (14 July is closed)."""
    course = Course("a", "adult_standard", 3, date(2026, 7, 13), date(2026, 7, 31))
    days = (date(2026, 7, 13), date(2026, 7, 15), date(2026, 7, 16))
    bookings = tuple(
        Booking("a", n, "G1", day, NINE, 50 if n == 1 else 30)
        for n, day in enumerate(days, start=1)
    )
    problem = Problem(
        default_gantry_day(), (course,), date(2026, 7, 1), date(2026, 9, 30), **problem_extra
    )
    return Schedule(problem, bookings, {"a": NINE}, method="by hand")


def with_session(schedule, index, **changes):
    bookings = list(schedule.bookings)
    bookings[index] = dataclasses.replace(bookings[index], **changes)
    return dataclasses.replace(schedule, bookings=tuple(bookings))


def constraints(schedule):
    return {violation.constraint for violation in check_schedule(schedule)}


def test_a_valid_schedule_has_no_violation():
    assert check_schedule(valid_schedule()) == []


@pytest.mark.parametrize(
    ("index", "changes", "constraint"),
    [
        (2, {"day": date(2026, 7, 17)}, "consecutive working days"),
        (1, {"day": date(2026, 7, 14)}, "working day"),
        (1, {"duration_min": 45}, "session duration"),
        (0, {"duration_min": 30}, "session duration"),
        (1, {"start_min": clock_to_min("08:20")}, "QA block"),
        (1, {"start_min": default_gantry_day().closing_min - 10}, "opening hours"),
        (1, {"start_min": NINE + 35}, "start-time variation"),
        (1, {"gantry_id": "G2"}, "gantry"),
    ],
)
def test_each_broken_session_constraint_is_found(index, changes, constraint):
    assert constraint in constraints(with_session(valid_schedule(), index, **changes))


def test_a_missing_fraction_is_found():
    schedule = valid_schedule()
    broken = dataclasses.replace(schedule, bookings=schedule.bookings[:2])
    assert constraints(broken) == {"fraction count"}


def test_starting_before_ready_or_after_due_is_found():
    schedule = valid_schedule()
    course = schedule.problem.courses[0]
    early = dataclasses.replace(course, ready_date=date(2026, 7, 15))
    late = dataclasses.replace(course, due_date=date(2026, 7, 10), ready_date=date(2026, 7, 1))
    for changed, constraint in ((early, "ready date"), (late, "due date")):
        problem = dataclasses.replace(schedule.problem, courses=(changed,))
        assert constraint in constraints(dataclasses.replace(schedule, problem=problem))


def test_children_under_anaesthesia_outside_the_morning_slot_are_found():
    schedule = valid_schedule()
    child = dataclasses.replace(schedule.problem.courses[0], category="paediatric_anaesthesia")
    bookings = tuple(
        dataclasses.replace(b, start_min=clock_to_min("10:30"), duration_min=60 if n == 0 else 45)
        for n, b in enumerate(schedule.bookings)
    )
    broken = Schedule(
        dataclasses.replace(schedule.problem, courses=(child,)),
        bookings,
        {"a": clock_to_min("10:30")},
        method="by hand",
    )
    assert constraints(broken) == {"anaesthesia slot"}


def test_overlap_with_a_fixed_session_or_a_downtime_is_found():
    fixed = Booking("old", 4, "G1", date(2026, 7, 15), NINE + 15, 30, announced=True)
    assert constraints(valid_schedule(fixed_bookings=(fixed,))) == {"no overlap"}
    downtime = Downtime("G1", date(2026, 7, 16), clock_to_min("08:50"), clock_to_min("09:10"))
    assert constraints(valid_schedule(downtimes=(downtime,))) == {"no overlap"}


def test_overlap_between_two_placed_sessions_is_found():
    schedule = valid_schedule()
    other = Course("b", "adult_standard", 1, date(2026, 7, 13), date(2026, 7, 31))
    problem = dataclasses.replace(schedule.problem, courses=(*schedule.problem.courses, other))
    intruder = Booking("b", 1, "G1", date(2026, 7, 13), NINE + 40, 50)
    broken = Schedule(
        problem, (*schedule.bookings, intruder), {"a": NINE, "b": NINE + 40}, method="by hand"
    )
    assert constraints(broken) == {"no overlap"}


def test_metrics_count_waiting_in_working_days_and_changes_of_time():
    schedule = valid_schedule()
    course = dataclasses.replace(schedule.problem.courses[0], ready_date=date(2026, 7, 9))
    problem = dataclasses.replace(schedule.problem, courses=(course,))
    moved = with_session(dataclasses.replace(schedule, problem=problem), 2, start_min=NINE + 15)
    metrics = schedule_metrics(moved)
    assert metrics.mean_waiting_working_days == 2  # Thursday 9 and Friday 10 July
    assert metrics.sessions_outside_usual_window == 1
    assert metrics.session_count == 3
