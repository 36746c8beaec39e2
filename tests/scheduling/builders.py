"""Small pure scheduling problems for the tests: a summer quarter, courses with sensible defaults."""

from __future__ import annotations

from datetime import date

from protonpath.scheduling.config import default_gantry_day
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
