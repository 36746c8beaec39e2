"""Synthetic year-long instances for tests and the benchmark (pure, seeded)."""

from __future__ import annotations

import random
from datetime import date, timedelta

from protonpath.scheduling.calendar import WorkingCalendar, add_working_days
from protonpath.scheduling.config import default_gantry_day
from protonpath.scheduling.model import Course, GantryDay, Problem

# Synthetic case mix: (indication category, fewest fractions, most fractions, weight).
# Fraction counts follow usual proton schedules (e.g. 54 Gy(RBE) in 30 x 1.8 for benign
# brain tumours, 70-74 Gy(RBE) in 35-37 for chordomas); the weights are an assumption.
CASE_MIX = (
    ("adult_standard", 30, 39, 0.58),
    ("adult_complex", 15, 33, 0.22),
    ("paediatric_awake", 25, 33, 0.12),
    ("paediatric_anaesthesia", 13, 33, 0.08),
)
URGENCY_MIX = (("urgent", 0.10), ("standard", 0.70), ("elective", 0.20))
# Courses ready late in the year still need room to finish: the horizon runs on.
HORIZON_TAIL_DAYS = 150


def _pick(rng: random.Random, table, weight_index: int):
    return rng.choices(table, weights=[row[weight_index] for row in table])[0]


def generate_courses(
    rng: random.Random,
    gantry_day: GantryDay,
    ready_days: tuple[date, ...],
    session_count: int,
    gantry_id: str,
    prefix: str,
) -> list[Course]:
    """Courses with ready dates drawn uniformly from ``ready_days`` until ``session_count``."""
    courses = []
    total = 0
    while total < session_count:
        category, fewest, most, _ = _pick(rng, CASE_MIX, 3)
        urgency = _pick(rng, URGENCY_MIX, 1)[0]
        fractions = rng.randint(fewest, most)
        ready = rng.choice(ready_days)
        due = add_working_days(ready, gantry_day.urgencies[urgency].due_working_days)
        courses.append(
            Course(
                course_id=f"{prefix}{len(courses):04d}",
                category=category,
                fraction_count=fractions,
                ready_date=ready,
                due_date=due,
                urgency=urgency,
                gantry_id=gantry_id,
            )
        )
        total += fractions
    return courses


def generate_year(
    *,
    seed: int,
    year: int = 2026,
    gantry_count: int = 1,
    sessions_per_gantry: int = 2400,
    gantry_day: GantryDay | None = None,
) -> Problem:
    """A year of courses for ``gantry_count`` gantries, about ``sessions_per_gantry`` each.

    Each gantry has its own patients (a network of centres); ready dates fall on the
    working days of ``year``.
    """
    gantry_day = gantry_day or default_gantry_day()
    rng = random.Random(seed)
    start = date(year, 1, 1)
    end = date(year, 12, 31)
    ready_days = WorkingCalendar.between(start, end).days
    gantry_ids = tuple(f"G{number + 1}" for number in range(gantry_count))
    courses = []
    for gantry_id in gantry_ids:
        courses += generate_courses(
            rng, gantry_day, ready_days, sessions_per_gantry, gantry_id, f"{gantry_id}-C"
        )
    return Problem(
        gantry_day=gantry_day,
        courses=tuple(courses),
        start_date=start,
        end_date=end + timedelta(days=HORIZON_TAIL_DAYS),
        gantry_ids=gantry_ids,
    )
