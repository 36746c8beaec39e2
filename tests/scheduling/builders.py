"""Small pure scheduling problems for the tests: a summer quarter, courses with sensible defaults."""

from __future__ import annotations

import dataclasses
from datetime import date

from protonpath.scheduling.config import clock_to_min, default_gantry_day
from protonpath.scheduling.model import Course, Problem
from protonpath.scheduling.solver import SolverOptions

FAST = SolverOptions(time_limit_s=3.0)
START, END = date(2026, 7, 1), date(2026, 9, 30)


def course(course_id, category="adult_standard", fractions=5, ready=date(2026, 7, 6), **extra):
    """A course due at the end of August unless ``due`` says otherwise."""
    due = extra.pop("due", date(2026, 8, 31))
    return Course(course_id, category, fractions, ready, due, **extra)


def problem(*courses, **extra):
    """The courses on one gantry's default day, July to September 2026."""
    return Problem(default_gantry_day(), tuple(courses), START, END, **extra)


def short_anaesthesia_day():
    """The default gantry day with anaesthesia starts allowed until 20 minutes before closing."""
    day = default_gantry_day()
    return dataclasses.replace(day, anaesthesia_latest_start_min=day.closing_min - 20)


def invalid_courses():
    """One course breaking each rule that validation checks before solving (with
    :func:`short_anaesthesia_day`): unknown category, urgency and gantry, no fractions, an
    anaesthesia session that cannot start early, a course longer than the horizon, a usual time
    before opening on a resumed course, and a repeated course id."""
    return [
        course("x", category="carbon_ions"),
        course("u", urgency="someday", gantry_id="G9"),
        course("z", fractions=0),
        course("child", "paediatric_anaesthesia"),
        course("long", fractions=80),
        course("early", usual_start_min=clock_to_min("06:00"), first_fraction_number=3),
        course("x"),
    ]
