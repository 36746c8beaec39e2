"""The CP-SAT solver: every constraint holds on its output (checked independently)."""

import dataclasses
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protonpath.scheduling.checker import check_schedule
from protonpath.scheduling.config import clock_to_min, default_gantry_day
from protonpath.scheduling.generate import generate_year
from protonpath.scheduling.model import Booking, Downtime, InfeasibleScheduleError
from protonpath.scheduling.solver import solve
from tests.scheduling.builders import FAST, course, problem


def test_a_small_department_week_is_valid():
    courses = [
        course("adult", fractions=8),
        course("child", "paediatric_anaesthesia", fractions=6),
        course("trunk", "adult_complex", fractions=4, urgency="urgent"),
        course("awake", "paediatric_awake", fractions=3, ready=date(2026, 7, 8)),
    ]
    schedule = solve(problem(*courses), FAST)
    assert check_schedule(schedule) == []
    assert len(schedule.bookings) == 8 + 6 + 4 + 3


def test_first_session_is_longer_and_courses_start_when_ready_on_an_empty_gantry():
    schedule = solve(problem(course("a", fractions=3)), FAST)
    durations = [b.duration_min for b in sorted(schedule.bookings, key=lambda b: b.day)]
    assert durations == [50, 30, 30]
    assert min(b.day for b in schedule.bookings) == date(2026, 7, 6)


def test_children_under_anaesthesia_start_early_in_the_morning():
    schedule = solve(problem(course("child", "paediatric_anaesthesia", fractions=4)), FAST)
    for booking in schedule.bookings:
        assert clock_to_min("08:40") <= booking.start_min <= clock_to_min("09:50")


def test_a_course_skips_bastille_day():
    schedule = solve(problem(course("a", fractions=3, ready=date(2026, 7, 13))), FAST)
    assert sorted(b.day for b in schedule.bookings) == [
        date(2026, 7, 13),
        date(2026, 7, 15),
        date(2026, 7, 16),
    ]


def test_fixed_sessions_and_downtimes_are_left_free():
    fixed = tuple(
        Booking("old", 5, "G1", date(2026, 7, day), clock_to_min("08:40"), 30, announced=True)
        for day in (6, 7, 8)
    )
    downtime = Downtime("G1", date(2026, 7, 7), clock_to_min("09:10"), clock_to_min("16:00"))
    schedule = solve(
        problem(course("a", fractions=3), fixed_bookings=fixed, downtimes=(downtime,)), FAST
    )
    assert check_schedule(schedule) == []
    assert schedule.bookings and all(b.course_id == "a" for b in schedule.bookings)
    assert set(fixed) <= set(schedule.all_bookings())


def test_a_ready_date_after_the_due_date_is_named():
    bad = course("late-plan", ready=date(2026, 7, 20), due=date(2026, 7, 10))
    with pytest.raises(InfeasibleScheduleError, match="course late-plan: ready date"):
        solve(problem(bad), FAST)


def test_an_unknown_category_is_named():
    with pytest.raises(InfeasibleScheduleError, match="course x: unknown indication category"):
        solve(problem(course("x", category="carbon_ions")), FAST)


def test_an_anaesthesia_window_too_late_for_the_session_is_named():
    closing_min = default_gantry_day().closing_min
    gantry_day = dataclasses.replace(
        default_gantry_day(), anaesthesia_latest_start_min=closing_min - 20
    )
    child = course("child", "paediatric_anaesthesia")
    with pytest.raises(InfeasibleScheduleError, match="course child: a 60 min session"):
        solve(dataclasses.replace(problem(child), gantry_day=gantry_day), FAST)


def test_courses_that_cannot_all_meet_their_due_dates_are_named():
    # A gantry open only for one session after QA: two urgent courses, same days.
    gantry_day = dataclasses.replace(default_gantry_day(), closing_min=clock_to_min("09:40"))
    courses = [
        course(name, fractions=5, due=date(2026, 7, 7), urgency="urgent") for name in ("u1", "u2")
    ]
    with pytest.raises(InfeasibleScheduleError, match="cannot start by its due date") as error:
        solve(dataclasses.replace(problem(*courses), gantry_day=gantry_day), FAST)
    assert len(error.value.reasons) == 1
    assert error.value.reasons[0].startswith(("course u1", "course u2"))


def test_allow_late_places_them_and_the_checker_reports_the_late_one():
    gantry_day = dataclasses.replace(default_gantry_day(), closing_min=clock_to_min("09:40"))
    courses = [course(name, fractions=5, due=date(2026, 7, 7)) for name in ("u1", "u2")]
    schedule = solve(
        dataclasses.replace(problem(*courses), gantry_day=gantry_day),
        dataclasses.replace(FAST, allow_late=True),
    )
    assert [v.constraint for v in check_schedule(schedule)] == ["due date"]


def test_courses_on_two_gantries_are_solved_each_on_its_own():
    courses = [course("a", fractions=4, gantry_id="G1"), course("b", fractions=4, gantry_id="G2")]
    schedule = solve(problem(*courses, gantry_ids=("G1", "G2")), FAST)
    assert check_schedule(schedule) == []
    assert {b.gantry_id for b in schedule.bookings if b.course_id == "b"} == {"G2"}


categories = st.sampled_from(sorted(default_gantry_day().categories))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(categories, st.integers(1, 8), st.integers(0, 10)), min_size=1, max_size=6)
)
def test_any_small_instance_solves_to_a_valid_schedule(specs):
    courses = [
        course(f"c{i}", category, fractions, ready=date(2026, 7, 1 + offset))
        for i, (category, fractions, offset) in enumerate(specs)
    ]
    schedule = solve(problem(*courses), dataclasses.replace(FAST, time_limit_s=2.0))
    assert check_schedule(schedule) == []


def test_a_generated_quarter_of_load_solves_to_a_schedule_with_only_late_starts_reported():
    problem = generate_year(seed=4, sessions_per_gantry=400)
    schedule = solve(problem, dataclasses.replace(FAST, allow_late=True))
    assert {v.constraint for v in check_schedule(schedule)} <= {"due date"}
    assert len(schedule.bookings) == sum(c.fraction_count for c in problem.courses)
