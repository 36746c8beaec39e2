"""Checks on a problem before solving, each failure named by course and constraint."""

from __future__ import annotations

from protonpath.scheduling.calendar import WorkingCalendar
from protonpath.scheduling.config import min_to_clock
from protonpath.scheduling.model import (
    Course,
    InfeasibleReason,
    InfeasibleScheduleError,
    Problem,
    infeasible_reason,
    session_duration_min,
    start_window_min,
)


def course_problems(
    problem: Problem, course: Course, calendar: WorkingCalendar
) -> list[InfeasibleReason]:
    """Reasons why ``course`` cannot be placed whatever the other courses do.

    Each reason's code: ``unknown_category``, ``unknown_urgency``, ``unknown_gantry``,
    ``no_fraction``, ``ready_after_due``, ``no_working_day``, ``beyond_horizon``,
    ``session_window`` or ``usual_start_outside``.
    """
    gantry_day = problem.gantry_day
    cid = course.course_id
    name = f"course {cid}"
    reasons = []
    if course.category not in gantry_day.categories:
        return [
            infeasible_reason(
                cid,
                "unknown_category",
                f"{name}: unknown indication category {course.category!r}",
                category=course.category,
            )
        ]
    if course.urgency not in gantry_day.urgencies:
        reasons.append(
            infeasible_reason(
                cid,
                "unknown_urgency",
                f"{name}: unknown urgency {course.urgency!r}",
                urgency=course.urgency,
            )
        )
    if course.gantry_id not in problem.gantry_ids:
        reasons.append(
            infeasible_reason(
                cid,
                "unknown_gantry",
                f"{name}: unknown gantry {course.gantry_id!r}",
                gantry_id=course.gantry_id,
            )
        )
    if course.fraction_count < 1:
        return reasons + [
            infeasible_reason(cid, "no_fraction", f"{name}: needs at least one fraction")
        ]
    if course.ready_date > course.due_date:
        reasons.append(
            infeasible_reason(
                cid,
                "ready_after_due",
                f"{name}: ready date {course.ready_date} is after its due date {course.due_date}",
                ready_date=course.ready_date,
                due_date=course.due_date,
            )
        )
    first = calendar.index_on_or_after(max(course.ready_date, problem.start_date))
    due = calendar.index_on_or_before(course.due_date)
    if first > due:
        reasons.append(
            infeasible_reason(
                cid,
                "no_working_day",
                f"{name}: no working day between ready date {course.ready_date} and due date "
                f"{course.due_date} within the planning horizon",
                ready_date=course.ready_date,
                due_date=course.due_date,
            )
        )
    if first + course.fraction_count > len(calendar):
        reasons.append(
            infeasible_reason(
                cid,
                "beyond_horizon",
                f"{name}: {course.fraction_count} consecutive working days from "
                f"{course.ready_date} do not fit before the horizon end {problem.end_date}",
                fraction_count=course.fraction_count,
                ready_date=course.ready_date,
                end_date=problem.end_date,
            )
        )
    for number in {course.first_fraction_number, course.first_fraction_number + 1}:
        duration = session_duration_min(gantry_day, course, number)
        earliest, latest = start_window_min(gantry_day, course, duration)
        if latest < earliest or latest + duration > gantry_day.closing_min:
            reasons.append(
                infeasible_reason(
                    cid,
                    "session_window",
                    f"{name}: a {duration} min session cannot start between "
                    f"{min_to_clock(earliest)} and {min_to_clock(latest)} and end by closing "
                    f"time {min_to_clock(gantry_day.closing_min)}",
                    duration_min=duration,
                    earliest=min_to_clock(earliest),
                    latest=min_to_clock(latest),
                    closing=min_to_clock(gantry_day.closing_min),
                )
            )
            break
    if course.usual_start_min is not None:
        duration = session_duration_min(gantry_day, course, course.first_fraction_number)
        earliest, latest = start_window_min(gantry_day, course, duration)
        if not earliest <= course.usual_start_min <= latest:
            reasons.append(
                infeasible_reason(
                    cid,
                    "usual_start_outside",
                    f"{name}: usual start {min_to_clock(course.usual_start_min)} is outside the "
                    f"allowed start window {min_to_clock(earliest)}-{min_to_clock(latest)}",
                    usual_start=min_to_clock(course.usual_start_min),
                    earliest=min_to_clock(earliest),
                    latest=min_to_clock(latest),
                )
            )
    return reasons


def validate_problem(problem: Problem) -> None:
    """Raise :class:`InfeasibleScheduleError` listing every course that cannot be placed."""
    calendar = WorkingCalendar.between(problem.start_date, problem.end_date, problem.closed_dates)
    reasons = []
    seen = set()
    for course in problem.courses:
        if course.course_id in seen:
            reasons.append(
                infeasible_reason(
                    course.course_id,
                    "duplicate_course",
                    f"course {course.course_id}: appears twice",
                )
            )
        seen.add(course.course_id)
        reasons.extend(course_problems(problem, course, calendar))
    if reasons:
        raise InfeasibleScheduleError(reasons)
