"""Changes to a live schedule: new course, downtime, missed session, earliest start."""

import dataclasses
from datetime import date

from protonpath.scheduling.checker import check_schedule
from protonpath.scheduling.config import clock_to_min, default_gantry_day
from protonpath.scheduling.incremental import (
    add_course,
    earliest_start,
    reschedule_after_downtime,
    reschedule_after_missed_session,
)
from protonpath.scheduling.model import Course, Downtime, Problem
from protonpath.scheduling.solver import SolverOptions, solve

FAST = SolverOptions(time_limit_s=3.0)


def course(course_id, fractions=5, ready=date(2026, 7, 6), **extra):
    return Course(course_id, "adult_standard", fractions, ready, date(2026, 8, 31), **extra)


def live(*courses, gantry_day=None):
    problem = Problem(
        gantry_day or default_gantry_day(), tuple(courses), date(2026, 7, 1), date(2026, 9, 30)
    )
    return solve(problem, FAST)


def announced(schedule):
    """The same schedule with every session announced to its patient."""
    bookings = tuple(dataclasses.replace(b, announced=True) for b in schedule.bookings)
    return dataclasses.replace(schedule, bookings=bookings)


def sessions_of(schedule, course_id):
    return sorted(schedule.bookings_of(course_id), key=lambda b: b.day)


def test_a_new_course_leaves_every_existing_session_in_place():
    before = live(course("a"), course("b"))
    after = add_course(before, course("new", fractions=4), options=FAST)
    assert set(before.all_bookings()) <= set(after.all_bookings())
    assert {b.course_id for b in after.bookings} == {"new"}
    assert check_schedule(after) == []


def test_allow_moving_replaces_unannounced_courses_but_not_announced_ones():
    before = live(course("a"))
    with_announced = add_course(announced(before), course("b"), options=FAST)
    after = add_course(with_announced, course("c"), allow_moving=True, options=FAST)
    assert set(sessions_of(with_announced, "a")) <= set(after.problem.fixed_bookings)
    assert {b.course_id for b in after.bookings} == {"b", "c"}
    assert check_schedule(after) == []


def test_earliest_start_is_the_ready_date_on_an_empty_gantry():
    problem = live().problem
    assert earliest_start(problem, course("x", ready=date(2026, 7, 6))) == date(2026, 7, 6)


def test_earliest_start_waits_for_a_gantry_with_room_for_one_course_a_day():
    one_slot = dataclasses.replace(default_gantry_day(), closing_min=clock_to_min("09:40"))
    schedule = live(course("a", fractions=5), gantry_day=one_slot)
    problem = dataclasses.replace(
        schedule.problem, courses=(), fixed_bookings=schedule.all_bookings()
    )
    # Course a takes Monday 6 to Friday 10 July.
    assert earliest_start(problem, course("x", ready=date(2026, 7, 6))) == date(2026, 7, 13)


def test_a_missed_session_is_added_after_the_last_day_at_the_usual_time():
    before = live(course("a", fractions=5))
    days = [b.day for b in sessions_of(before, "a")]
    after = reschedule_after_missed_session(before, "a", days[2], options=FAST)
    sessions = sessions_of(after, "a")
    assert [b.day for b in sessions] == days[:2] + days[3:] + [date(2026, 7, 13)]
    assert [b.fraction_number for b in sessions] == [1, 2, 3, 4, 5]
    usual_window_min = default_gantry_day().usual_window_min
    assert abs(sessions[-1].start_min - before.usual_start_min["a"]) <= usual_window_min
    assert check_schedule(after) == []


def test_a_whole_day_downtime_pushes_each_course_one_day_further():
    before = live(course("a", fractions=4), course("b", fractions=4))
    broken_day = date(2026, 7, 8)
    downtime = Downtime("G1", broken_day, clock_to_min("08:00"), clock_to_min("16:00"), "beam")
    after = reschedule_after_downtime(before, [downtime], options=FAST)
    assert check_schedule(after) == []
    for course_id in ("a", "b"):
        sessions = sessions_of(after, course_id)
        assert len(sessions) == 4
        assert broken_day not in {b.day for b in sessions}
        assert sessions[-1].day == date(2026, 7, 10)


def test_a_downtime_on_the_first_day_moves_the_whole_course():
    before = live(course("a", fractions=3))
    downtime = Downtime("G1", date(2026, 7, 6), clock_to_min("08:00"), clock_to_min("16:00"))
    after = reschedule_after_downtime(before, [downtime], options=FAST)
    sessions = sessions_of(after, "a")
    assert [b.day for b in sessions] == [date(2026, 7, 7), date(2026, 7, 8), date(2026, 7, 9)]
    assert sessions[0].duration_min == 50
    assert check_schedule(after) == []


def test_allow_moving_never_drops_the_delivered_part_of_a_pushed_course():
    before = live(course("a", fractions=4))
    missed_day = sorted(b.day for b in before.bookings)[1]
    after_miss = reschedule_after_missed_session(before, "a", missed_day, options=FAST)
    after = add_course(after_miss, course("b"), allow_moving=True, options=FAST)
    assert len(after.bookings_of("a")) == 4
    assert check_schedule(after) == []
