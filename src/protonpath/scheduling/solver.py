"""Gantry scheduling with OR-Tools CP-SAT (pure: no Django, no I/O).

Each course belongs to one gantry, so gantries are solved one after the other.  Per gantry:

1. **Start days** (CP-SAT, cumulative on the working-day axis).  A course is an interval of
   ``fraction_count`` consecutive working days from its ready day on; each day's treatment
   minutes stay below ``packing`` times the day's free minutes (and the anaesthesia minutes
   below the early-morning window).  It minimises weighted waiting days; starting after the
   due date is allowed but costs far more, so an impossible due date is reported by name.
2. **Steady times, sliding.**  In order of start day (children under anaesthesia first),
   each course takes the usual time that keeps most sessions inside the usual window, each
   session within +/- ``max_start_shift_min`` of it, on time steps left free by QA,
   downtimes, fixed sessions and the courses before it; other courses avoid the early-morning
   anaesthesia slots.  A course that fits nowhere on its day slides to the next day that fits.
3. **Candidates.**  Day-by-day list schedules (shortest pressing course first, or first
   ready first; steady or first-fit times, the baseline among them) are also built and the
   cheapest result is kept, so the solver is never worse than first-fit on its objective.
4. **Polish** (CP-SAT, days nearly fixed), in overlapping windows of courses taken in
   order of start day.  Starting from that result, every course of a window may shift its
   session times and each one starting later than its stage-1 day may start on a few days
   back towards it; no two sessions of a day overlap.  It minimises waiting, then sessions
   outside the usual window, and a window's result is kept only if it costs less.

Deciding days on capacities and times afterwards is what lets a year of one gantry (2,400
sessions) solve within a minute on two cores: a model with both at once on a minute timeline,
or a 2-D packing with one rectangle per course, did not improve on first-fit within a minute,
and a time-of-day model over the whole year from scratch did not place every course in time.
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
    anaesthesia_reserve_min,
    infeasible_reason,
    session_duration_min,
)
from protonpath.scheduling.occupancy import (
    GantryOccupancy,
    Placement,
    bookings_from_placement,
    occupancies_for,
)
from protonpath.scheduling.validation import validate_problem

LATE_DAY_COST = 1_000
# A session outside its usual window costs this many waiting days (tie-breaker).
OUTSIDE_WINDOW_COST = 0.02
STAGE_1_SHARE = 0.3
MIN_POLISH_S = 1.0
MAX_LATE_DAYS = 60
POLISH_DAY_OPTIONS = 8
POLISH_WINDOW = 40
# Integer costs of stage 2: a waiting day is worth 50 sessions outside the usual window; a
# usual time one step later costs a hundredth of one, so free time stays in one block at the
# end of the day.
USUAL_STEP_UNITS = 1
OUTSIDE_UNITS = 100
WAITING_DAY_UNITS = 5_000
LEFT_OUT_UNITS = 100_000_000
# A course this close to its due date (working days) goes first in the slack list schedule.
SLACK_DAYS = 3
# A course without anaesthesia whose usual time falls in the anaesthesia slots.
RESERVE_UNITS = 50


@dataclass(frozen=True)
class SolverOptions:
    """Tuning of the solver.

    ``packing`` is the share of a day's free minutes that stage 1 may fill (the rest absorbs
    the loss to fitting sessions at a steady time of day); ``time_limit_s`` is per gantry.
    """

    time_limit_s: float = 50.0
    workers: int = 2
    packing: float = 1.0
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
        placements, unplaced = solve_gantry(courses, grid, options)
        reasons += [
            infeasible_reason(
                c.course_id,
                "no_room",
                f"course {c.course_id}: no room before {problem.end_date}",
                end_date=problem.end_date,
            )
            for c in unplaced
        ]
        for course in courses:
            placement = placements.get(course.course_id)
            if placement is None:
                continue
            bookings.extend(bookings_from_placement(course, placement, calendar))
            usual[course.course_id] = placement.usual_start_min
            first_date = calendar.days[placement.start_day_index]
            if not options.allow_late and first_date > course.due_date:
                reasons.append(
                    infeasible_reason(
                        course.course_id,
                        "late_start",
                        f"course {course.course_id} ({course.urgency}): cannot start by its due "
                        f"date {course.due_date} around the gantry's other sessions; earliest "
                        f"joint start {first_date}",
                        urgency=course.urgency,
                        due_date=course.due_date,
                        first_date=first_date,
                    )
                )
    if reasons:
        raise InfeasibleScheduleError(reasons)
    return Schedule(
        problem=problem,
        bookings=tuple(bookings),
        usual_start_min=usual,
        method="cp-sat",
        solve_time_s=time.perf_counter() - started,
    )


def solve_gantry(
    courses: list[Course], grid: GantryOccupancy, options: SolverOptions
) -> tuple[dict[str, Placement], list[Course]]:
    """Placements of the courses of one gantry, and the courses that fit nowhere.

    Candidates: the stage-1 start days with greedy steady times, sliding a course that does
    not fit; and day-by-day list schedules (:func:`list_schedule`) by slack then length, and
    by ready date, with steady times or first-fit times (the last is the baseline).  The
    cheapest (fewest courses unplaced, then :func:`placement_cost`) is polished by the CP-SAT
    time-of-day model with the time left, so the result is never worse than the baseline.
    ``grid`` is updated with the kept placements.
    """
    started = time.perf_counter()
    start_days = assign_start_days(courses, grid, options)
    candidates = []
    slid = grid.copy()
    placed, unplaced = place_times(courses, start_days, slid, mode="best")
    candidates.append((slid, {c.course_id: p for c, p in placed}, unplaced))
    for priority, mode in (("slack", "best"), ("ready", "best"), ("ready", "first_fit")):
        greedy = grid.copy()
        candidates.append((greedy, *list_schedule(courses, greedy, priority, mode)))
    best_grid, placements, unplaced = min(
        candidates,
        key=lambda item: (len(item[2]), placement_cost(courses, item[1], grid)),
    )
    remaining_s = options.time_limit_s - (time.perf_counter() - started)
    placed_courses = [c for c in courses if c.course_id in placements]
    polished = polish(
        placed_courses, placements, start_days, grid, options, max(MIN_POLISH_S, remaining_s)
    )
    if polished != placements:
        placements = polished
        best_grid = grid.copy()
        for placement in placements.values():
            best_grid.commit(placement)
    grid.taken = best_grid.taken
    return placements, unplaced


def list_schedule(
    courses: list[Course], grid: GantryOccupancy, priority: str, mode: str
) -> tuple[dict[str, Placement], list[Course]]:
    """Day by day, start the waiting courses that fit, most pressing first.

    ``priority="slack"`` takes courses within ``SLACK_DAYS`` of their due date first, then
    shorter courses first (short jobs first cut mean waiting); ``priority="ready"`` takes them
    in order of ready date.  ``mode`` is passed to :meth:`GantryOccupancy.try_place`.
    Placements are committed to ``grid``.
    """
    calendar = grid.calendar
    ready = {c.course_id: grid.ready_day(c) for c in courses}
    due = {c.course_id: calendar.index_on_or_before(c.due_date) for c in courses}

    def urgency(course: Course, day: int):
        if priority == "slack":
            pressing = due[course.course_id] - day > SLACK_DAYS
            return (pressing, course.fraction_count, course.course_id)
        return (ready[course.course_id], course.course_id)

    waiting = sorted(courses, key=lambda c: ready[c.course_id])
    placements: dict[str, Placement] = {}
    for day in range(len(calendar)):
        queue = [c for c in waiting if ready[c.course_id] <= day]
        for course in sorted(queue, key=lambda c: urgency(c, day)):
            placement = grid.try_place(course, day, mode=mode)
            if placement is not None:
                grid.commit(placement)
                placements[course.course_id] = placement
        waiting = [c for c in waiting if c.course_id not in placements]
        if not waiting:
            break
    return placements, waiting


def placement_cost(
    courses: list[Course], placements: dict[str, Placement], grid: GantryOccupancy
) -> float:
    """Weighted waiting days, lateness and time-of-day changes of a set of placements."""
    gantry_day = grid.gantry_day
    cost = 0.0
    for course in courses:
        placement = placements.get(course.course_id)
        if placement is None:
            continue
        waiting = placement.start_day_index - grid.ready_day(course)
        late = max(0, placement.start_day_index - grid.calendar.index_on_or_before(course.due_date))
        outside = sum(
            abs(start - placement.usual_start_min) > gantry_day.usual_window_min
            for start in placement.start_mins
        )
        weight = gantry_day.urgencies[course.urgency].waiting_weight
        cost += weight * waiting + LATE_DAY_COST * late + OUTSIDE_WINDOW_COST * outside
    return cost


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
        # Waiting far beyond the due date is never useful and bloats the model.
        latest = min(day_count - count, max(ready, due) + MAX_LATE_DAYS)
        start = model.new_int_var(ready, max(ready, latest), f"start_{course.course_id}")
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
    solver.parameters.max_time_in_seconds = options.time_limit_s * STAGE_1_SHARE
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
    scratch = grid.copy()
    for course in sorted(courses, key=lambda c: (c.ready_date, c.course_id)):
        ready = grid.calendar.index_on_or_after(course.ready_date)
        placement = scratch.first_fit(course, ready)
        if placement is not None:
            scratch.commit(placement)
            model.add_hint(starts[course.course_id], placement.start_day_index)


def place_times(
    courses: list[Course],
    start_days: dict[str, int],
    grid: GantryOccupancy,
    mode: str = "best",
    order: dict[str, int] | None = None,
):
    """Greedy time placement, in order of start day, sliding a course later if its day is full.

    ``order`` (default ``start_days``) gives the day by which courses are taken in turn.

    Returns the placed ``(course, placement)`` pairs (committed to ``grid``) and the courses
    that fit nowhere before the end of the horizon.
    """
    gantry_day = grid.gantry_day

    rank = order or start_days

    def turn(course: Course):
        anaesthesia = gantry_day.categories[course.category].anaesthesia
        return (rank[course.course_id], not anaesthesia, course.course_id)

    placed, unplaced = [], []
    for course in sorted(courses, key=turn):
        placement = grid.first_fit(course, start_days[course.course_id], mode=mode)
        if placement is None:
            unplaced.append(course)
            continue
        grid.commit(placement)
        placed.append((course, placement))
    return placed, unplaced


def polish(
    courses: list[Course],
    placements: dict[str, Placement],
    start_days: dict[str, int],
    grid: GantryOccupancy,
    options: SolverOptions,
    time_limit_s: float,
) -> dict[str, Placement]:
    """Improve complete ``placements`` window by window with the time-of-day model (CP-SAT).

    Courses are taken in order of start day, ``POLISH_WINDOW`` at a time (windows overlap by
    half); the others stay where they are.  In a window every course may shift its session
    times, and a course starting later than its stage-1 day may start on a few days back
    towards it.  A window's new placements are kept only if they cost less.  ``grid`` must not
    hold the placements.  Small windows keep each model quick to load and solve.
    """
    placements = dict(placements)
    ordered = sorted(courses, key=lambda c: (placements[c.course_id].start_day_index, c.course_id))
    stride = max(1, POLISH_WINDOW // 2)
    windows = [ordered[i : i + POLISH_WINDOW] for i in range(0, len(ordered), stride)]
    windows = [w for i, w in enumerate(windows) if i == 0 or len(w) > stride]
    deadline = time.perf_counter() + time_limit_s
    for index, window in enumerate(windows):
        left_s = deadline - time.perf_counter()
        if left_s <= 0:
            break
        share_s = max(MIN_POLISH_S, left_s / (len(windows) - index))
        placements.update(_polish_window(window, placements, start_days, grid, options, share_s))
    return placements


def _polish_window(window, placements, start_days, grid, options, time_limit_s):
    """Better placements for the courses of ``window``, or their current ones."""
    names = {c.course_id for c in window}
    around = grid.copy()
    for name, placement in placements.items():
        if name not in names:
            around.commit(placement)
    day_options = {}
    for course in window:
        now = placements[course.course_id].start_day_index
        planned = min(start_days[course.course_id], now)
        span = list(range(planned, now + 1))
        stride = max(1, math.ceil(len(span) / POLISH_DAY_OPTIONS))
        day_options[course.course_id] = sorted(set(span[::stride]) | {now})
    current = {name: placements[name] for name in names}
    polished = place_times_cp(window, day_options, around, options, time_limit_s, hint=current)
    if len(polished) == len(window) and placement_cost(window, polished, grid) < placement_cost(
        window, current, grid
    ):
        return polished
    return current


def place_times_cp(
    courses: list[Course],
    day_options: dict[str, list[int]],
    grid: GantryOccupancy,
    options: SolverOptions,
    time_limit_s: float,
    hint: dict[str, Placement] | None = None,
) -> dict[str, Placement]:
    """Times of day for courses whose start day is one of a few options (CP-SAT).

    Each course gets at most one start day among ``day_options``, a usual time, and each
    session a start within ``max_start_shift_min`` of it on time steps ``grid`` leaves free;
    sessions of one day may not overlap.  Leaving a course out is allowed but costs more than
    anything else, then come waiting days, then sessions outside the usual window.  Returns
    the placements of the courses kept (empty if no solution was found in time).
    """
    gantry_day = grid.gantry_day
    step = grid.step_min
    shift = gantry_day.max_start_shift_min // step
    window = gantry_day.usual_window_min // step
    model = cp_model.CpModel()
    by_day: dict[int, list] = {}
    chosen = {}
    objective = []
    for course in courses:
        name = course.course_id
        count = course.fraction_count
        durations, durations_slots, lo, hi = grid._session_slots(course, count)
        if course.usual_start_min is not None:
            usual = model.new_constant((course.usual_start_min - gantry_day.opening_min) // step)
        else:
            usual = model.new_int_var(max(lo, 0), int(hi.max()), f"usual_{name}")
        weight = gantry_day.urgencies[course.urgency].waiting_weight
        ready = grid.ready_day(course)
        picks = []
        for day in day_options[name]:
            if day + count > len(grid.calendar):
                continue
            feasible = grid._feasible_starts(day, durations_slots, lo, hi)
            if not feasible.any(axis=1).all():
                continue
            pick = model.new_bool_var(f"pick_{name}_{day}")
            starts, outs = [], []
            for offset in range(count):
                values = [int(v) for v in feasible[offset].nonzero()[0]]
                start = model.new_int_var_from_domain(
                    cp_model.Domain.from_values(values), f"t_{name}_{day}_{offset}"
                )
                model.add(start - usual <= shift).only_enforce_if(pick)
                model.add(start - usual >= -shift).only_enforce_if(pick)
                outside = model.new_bool_var(f"out_{name}_{day}_{offset}")
                model.add(start - usual <= window).only_enforce_if(outside.Not())
                model.add(start - usual >= -window).only_enforce_if(outside.Not())
                interval = model.new_optional_fixed_size_interval_var(
                    start, int(durations_slots[offset]), pick, f"s_{name}_{day}_{offset}"
                )
                by_day.setdefault(day + offset, []).append(interval)
                starts.append(start)
                outs.append(outside)
                objective.append(OUTSIDE_UNITS * outside)
            objective.append(WAITING_DAY_UNITS * weight * (day - ready) * pick)
            picks.append((day, pick, starts, outs))
        if not picks:
            continue
        objective.append(USUAL_STEP_UNITS * usual)
        reserve_end = _reserve_end_slot(course, grid)
        if reserve_end is not None and course.usual_start_min is None:
            in_reserve = model.new_bool_var(f"reserve_{name}")
            model.add(usual >= reserve_end).only_enforce_if(in_reserve.Not())
            objective.append(RESERVE_UNITS * in_reserve)
        model.add_at_most_one([pick for _, pick, _, _ in picks])
        left_out = 1 - sum(pick for _, pick, _, _ in picks)
        objective.append(LEFT_OUT_UNITS * count * left_out)
        chosen[name] = (course, usual, picks, durations)
    for intervals in by_day.values():
        model.add_no_overlap(intervals)
    _add_hint(model, chosen, hint or {}, grid)
    model.minimize(sum(objective))

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = options.workers
    solver.parameters.random_seed = options.seed
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return {}
    placements = {}
    opening = gantry_day.opening_min
    for name, (_course, usual, picks, durations) in chosen.items():
        for day, pick, starts, _outs in picks:
            if solver.boolean_value(pick):
                placements[name] = Placement(
                    start_day_index=day,
                    usual_start_min=opening + solver.value(usual) * step,
                    start_mins=tuple(opening + solver.value(s) * step for s in starts),
                    duration_mins=tuple(int(d) for d in durations),
                )
    return placements


def _reserve_end_slot(course: Course, grid: GantryOccupancy) -> int | None:
    """First time step after the anaesthesia slots, for a course that needs none."""
    if grid.gantry_day.categories[course.category].anaesthesia:
        return None
    _first, last = anaesthesia_reserve_min(grid.gantry_day)
    return -(-(last - grid.gantry_day.opening_min) // grid.step_min)


def _add_hint(model, chosen, hint: dict[str, Placement], grid: GantryOccupancy) -> None:
    """Hint known placements (each on one of its course's day options)."""
    opening = grid.gantry_day.opening_min
    step = grid.step_min
    for name, (course, usual, picks, _durations) in chosen.items():
        placement = hint.get(name)
        for day, pick, starts, outs in picks:
            on = placement is not None and placement.start_day_index == day
            model.add_hint(pick, on)
            if not on:
                # A complete hint lets CP-SAT start from it at once.
                for start, outside in zip(starts, outs, strict=True):
                    model.add_hint(start, start.proto.domain[0])
                    model.add_hint(outside, True)
                continue
            if course.usual_start_min is None:
                model.add_hint(usual, (placement.usual_start_min - opening) // step)
            window = grid.gantry_day.usual_window_min
            for start, outside, minutes in zip(starts, outs, placement.start_mins, strict=True):
                model.add_hint(start, (minutes - opening) // step)
                model.add_hint(outside, abs(minutes - placement.usual_start_min) > window)
