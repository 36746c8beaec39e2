"""Gantry scheduling with OR-Tools CP-SAT (pure: no Django, no I/O).

Two stages, per gantry (each course belongs to one gantry, so gantries are independent):

1. **Start days.**  A CP-SAT model on the working-day axis: each course is an interval of
   ``fraction_count`` consecutive working days starting on or after its ready day; a
   cumulative constraint keeps each day's treatment minutes below the day's free minutes
   times a packing factor (and the anaesthesia minutes below the early-morning window).
   It minimises the weighted waiting days; a start after the due date is allowed but costs
   far more than any waiting, so an impossible due date is reported, not silently missed.
2. **Times of day.**  Courses in order of their start day get the usual time that keeps most
   sessions inside the usual window, each session within +/- ``max_start_shift_min`` of it,
   on a minute grid that already holds QA blocks, downtimes and fixed sessions.  A course that
   does not fit on its day slides to the next day that fits.

Deciding days on capacities and times afterwards is what lets a year (2,400 sessions) solve in
seconds: one monolithic model with a minute timeline for every session does not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from protonpath.scheduling.calendar import WorkingCalendar
from protonpath.scheduling.model import (
    Course,
    InfeasibleScheduleError,
    Problem,
    Schedule,
    session_duration_min,
    start_window_min,
)
from protonpath.scheduling.occupancy import (
    GantryOccupancy,
    bookings_from_placement,
    occupancies_for,
)
from protonpath.scheduling.validation import validate_problem

LATE_DAY_COST = 1_000


@dataclass(frozen=True)
class SolverOptions:
    """Tuning of the solver.

    ``packing`` is the share of a day's free minutes that stage 1 may fill (the rest absorbs
    the loss to fitting sessions at a steady time of day); ``time_limit_s`` is per gantry.
    """

    time_limit_s: float = 20.0
    workers: int = 2
    packing: float = 0.92
    allow_late: bool = False
    seed: int = 0


def solve(problem: Problem, options: SolverOptions | None = None) -> Schedule:
    """Place every course of ``problem`` around its fixed bookings and downtimes.

    Parameters
    ----------
    problem
        Courses to place, fixed (announced) bookings, downtimes and the horizon.
    options
        Solver tuning; defaults are sized for a year of one gantry on two cores.

    Returns
    -------
    Schedule
        The bookings of the placed courses and each course's usual start time.

    Raises
    ------
    InfeasibleScheduleError
        If a course cannot be placed at all, or (unless ``options.allow_late``) cannot start
        by its due date; the message names each such course and the constraint.
    """
    options = options or SolverOptions()
    started = time.perf_counter()
    validate_problem(problem)
    calendar, grids = occupancies_for(problem)
    bookings = []
    usual = {}
    reasons = []
    for gantry_id, grid in grids.items():
        courses = [c for c in problem.courses if c.gantry_id == gantry_id]
        if not courses:
            continue
        start_days = assign_start_days(courses, grid, options)
        placed, unplaced = place_times(courses, start_days, grid)
        reasons += [f"course {c.course_id}: no room before {problem.end_date}" for c in unplaced]
        for course, placement in placed:
            bookings.extend(bookings_from_placement(course, placement, calendar))
            usual[course.course_id] = placement.usual_start_min
            if not options.allow_late:
                reasons += _lateness(course, calendar.days[placement.start_day_index], grid)
    if reasons:
        raise InfeasibleScheduleError(reasons)
    return Schedule(
        problem=problem,
        bookings=tuple(bookings),
        usual_start_min=usual,
        method="cp-sat",
        solve_time_s=time.perf_counter() - started,
    )


def _lateness(course: Course, start, grid: GantryOccupancy) -> list[str]:
    if start <= course.due_date:
        return []
    return [
        f"course {course.course_id} ({course.urgency}): cannot start by its due date "
        f"{course.due_date} with the gantry's other sessions; earliest joint start {start}"
    ]


def assign_start_days(
    courses: list[Course], grid: GantryOccupancy, options: SolverOptions
) -> dict[str, int]:
    """Stage 1: the working-day index of each course's first session (CP-SAT)."""
    gantry_day = grid.gantry_day
    calendar: WorkingCalendar = grid.calendar
    day_count = len(calendar)
    model = cp_model.CpModel()
    free = grid.free_minutes()
    capacity_by_day = [math.floor(minutes * options.packing) for minutes in free]
    capacity = max(capacity_by_day)
    anaesthesia_window = _anaesthesia_capacity(grid, options)

    intervals, demands, child_intervals, child_demands = [], [], [], []
    starts = {}
    objective = []
    for course in courses:
        ready = calendar.index_on_or_after(course.ready_date)
        due = calendar.index_on_or_before(course.due_date)
        count = course.fraction_count
        start = model.new_int_var(ready, day_count - count, f"start_{course.course_id}")
        starts[course.course_id] = start
        daily = session_duration_min(gantry_day, course, course.first_fraction_number + 1)
        first = session_duration_min(gantry_day, course, course.first_fraction_number)
        whole = model.new_fixed_size_interval_var(start, count, f"course_{course.course_id}")
        first_day = model.new_fixed_size_interval_var(start, 1, f"first_{course.course_id}")
        pairs = [(whole, daily)] + ([(first_day, first - daily)] if first > daily else [])
        for interval, demand in pairs:
            intervals.append(interval)
            demands.append(demand)
            if gantry_day.categories[course.category].anaesthesia:
                child_intervals.append(interval)
                child_demands.append(demand)
        late = model.new_int_var(0, day_count, f"late_{course.course_id}")
        model.add(late >= start - due)
        weight = gantry_day.urgencies[course.urgency].waiting_weight
        objective += [weight * (start - ready), LATE_DAY_COST * late]

    _add_day_reductions(model, capacity, capacity_by_day, intervals, demands)
    model.add_cumulative(intervals, demands, capacity)
    if child_intervals:
        child_capacity = max(anaesthesia_window)
        _add_day_reductions(
            model, child_capacity, anaesthesia_window, child_intervals, child_demands
        )
        model.add_cumulative(child_intervals, child_demands, child_capacity)
    _add_first_fit_hint(model, courses, starts, grid)
    model.minimize(sum(objective))

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = options.time_limit_s
    solver.parameters.num_workers = options.workers
    solver.parameters.random_seed = options.seed
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        # The relaxed model always has a solution unless the horizon is too short.
        return {c.course_id: calendar.index_on_or_after(c.ready_date) for c in courses}
    return {course_id: solver.value(var) for course_id, var in starts.items()}


def _anaesthesia_capacity(grid: GantryOccupancy, options: SolverOptions) -> list[int]:
    """Minutes per day usable by children under anaesthesia (early-morning window)."""
    gantry_day = grid.gantry_day
    longest = max(
        (c.session_duration_min for c in gantry_day.categories.values() if c.anaesthesia),
        default=0,
    )
    free = grid.free_minutes_between(
        gantry_day.anaesthesia_earliest_start_min,
        gantry_day.anaesthesia_latest_start_min + longest,
    )
    return [math.floor(minutes * options.packing) for minutes in free]


def _add_day_reductions(model, capacity, capacity_by_day, intervals, demands) -> None:
    """Fixed intervals taking up what a day has less than ``capacity``."""
    for day, day_capacity in enumerate(capacity_by_day):
        if day_capacity < capacity:
            intervals.append(model.new_fixed_size_interval_var(day, 1, f"reduced_{day}"))
            demands.append(capacity - max(day_capacity, 0))


def _add_first_fit_hint(model, courses, starts, grid: GantryOccupancy) -> None:
    """Hint the start days of a first-fit pass on a copy of the grid."""
    scratch = GantryOccupancy(grid.calendar, grid.gantry_day)
    scratch.taken = grid.taken.copy()
    for course in sorted(courses, key=lambda c: (c.ready_date, c.course_id)):
        ready = grid.calendar.index_on_or_after(course.ready_date)
        placement = scratch.first_fit(course, ready)
        if placement is not None:
            scratch.commit(placement)
            model.add_hint(starts[course.course_id], placement.start_day_index)


def place_times(courses: list[Course], start_days: dict[str, int], grid: GantryOccupancy):
    """Stage 2: usual time and session times, sliding a course later if its day is full.

    Returns the placed ``(course, placement)`` pairs and the courses that fit nowhere.
    """
    gantry_day = grid.gantry_day

    def order(course: Course):
        anaesthesia = gantry_day.categories[course.category].anaesthesia
        return (start_days[course.course_id], not anaesthesia, -course.fraction_count)

    placed, unplaced = [], []
    for course in sorted(courses, key=order):
        placement = grid.first_fit(course, start_days[course.course_id], mode="best")
        if placement is None:
            unplaced.append(course)
            continue
        grid.commit(placement)
        placed.append((course, placement))
    return placed, unplaced
