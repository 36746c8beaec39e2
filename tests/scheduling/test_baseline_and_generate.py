"""The greedy first-fit baseline and the synthetic year generator."""

from datetime import date

from protonpath.scheduling.baseline import first_fit_schedule
from protonpath.scheduling.calendar import is_working_day
from protonpath.scheduling.checker import check_schedule
from protonpath.scheduling.generate import generate_year


def test_generated_year_has_about_2400_sessions_ready_on_working_days():
    problem = generate_year(seed=3)
    sessions = sum(c.fraction_count for c in problem.courses)
    assert 2400 <= sessions < 2440
    assert all(is_working_day(c.ready_date) for c in problem.courses)
    assert all(c.ready_date.year == 2026 and c.due_date >= c.ready_date for c in problem.courses)


def test_generation_is_reproducible_per_seed():
    assert generate_year(seed=5).courses == generate_year(seed=5).courses
    assert generate_year(seed=5).courses != generate_year(seed=6).courses


def test_network_instance_gives_each_gantry_its_own_courses():
    problem = generate_year(seed=1, gantry_count=3, sessions_per_gantry=300)
    assert problem.gantry_ids == ("G1", "G2", "G3")
    for gantry_id in problem.gantry_ids:
        mine = [c for c in problem.courses if c.gantry_id == gantry_id]
        assert sum(c.fraction_count for c in mine) >= 300


def test_first_fit_breaks_no_constraint_but_due_dates():
    problem = generate_year(seed=2, sessions_per_gantry=400)
    schedule = first_fit_schedule(problem)
    assert len(schedule.bookings) == sum(c.fraction_count for c in problem.courses)
    assert {v.constraint for v in check_schedule(schedule)} <= {"due date"}


def test_first_fit_starts_the_first_course_on_its_ready_day():
    problem = generate_year(seed=2, sessions_per_gantry=400)
    first = min(problem.courses, key=lambda c: (c.ready_date, c.course_id))
    schedule = first_fit_schedule(problem)
    assert min(b.day for b in schedule.bookings_of(first.course_id)) == first.ready_date
    assert first.ready_date >= date(2026, 1, 2)
