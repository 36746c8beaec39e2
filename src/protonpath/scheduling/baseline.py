"""Greedy first-fit baseline: courses in order of ready date, each at the earliest day and time."""

from __future__ import annotations

import time

from protonpath.scheduling.model import (
    InfeasibleScheduleError,
    Problem,
    Schedule,
    infeasible_reason,
)
from protonpath.scheduling.occupancy import bookings_from_placement, occupancies_for
from protonpath.scheduling.validation import validate_problem


def first_fit_schedule(problem: Problem) -> Schedule:
    """Place courses one by one, in order of ready date, at the first day and time that fit.

    Each course gets the earliest usual time at which all its sessions fit within the allowed
    shift.  Due dates are not enforced (the greedy cannot do better than its first fit); the
    checker reports late starts.

    Raises
    ------
    InfeasibleScheduleError
        If the input is invalid or a course fits nowhere before the end of the horizon.
    """
    started = time.perf_counter()
    validate_problem(problem)
    calendar, grids = occupancies_for(problem)
    bookings = []
    usual = {}
    unplaced = []
    for course in sorted(problem.courses, key=lambda c: (c.ready_date, c.course_id)):
        grid = grids[course.gantry_id]
        placement = grid.first_fit(course, calendar.index_on_or_after(course.ready_date))
        if placement is None:
            unplaced.append(
                infeasible_reason(
                    course.course_id,
                    "no_room",
                    f"course {course.course_id}: no room before {problem.end_date}",
                    end_date=problem.end_date,
                )
            )
            continue
        grid.commit(placement)
        bookings.extend(bookings_from_placement(course, placement, calendar))
        usual[course.course_id] = placement.usual_start_min
    if unplaced:
        raise InfeasibleScheduleError(unplaced)
    return Schedule(
        problem=problem,
        bookings=tuple(bookings),
        usual_start_min=usual,
        method="first-fit",
        solve_time_s=time.perf_counter() - started,
    )
