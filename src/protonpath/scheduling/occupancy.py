"""Occupancy grid of one gantry: working days x time steps, and course placement on it.

Shared by the greedy baseline, the solver's time placement and 'earliest possible start'.
The grid starts at the opening time; one cell is ``time_step_min`` minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from protonpath.scheduling.calendar import WorkingCalendar
from protonpath.scheduling.model import (
    Booking,
    Course,
    Downtime,
    GantryDay,
    anaesthesia_reserve_min,
    session_duration_min,
    start_window_min,
)

_FAR = 10**6
# Cost, in the units of mode "best" (10,000 per session outside the usual window), of a
# usual time inside the early-morning anaesthesia slots for a course that needs none.
RESERVE_COST = 5_000


@dataclass(frozen=True)
class Placement:
    """Where a course goes: first working-day index, usual start and each session's start."""

    start_day_index: int
    usual_start_min: int
    start_mins: tuple[int, ...]
    duration_mins: tuple[int, ...]


class GantryOccupancy:
    """Which time steps of which working days are taken on one gantry."""

    def __init__(self, calendar: WorkingCalendar, gantry_day: GantryDay):
        self.calendar = calendar
        self.gantry_day = gantry_day
        self.step_min = gantry_day.time_step_min
        self.slot_count = (gantry_day.closing_min - gantry_day.opening_min) // self.step_min
        self.taken = np.zeros((len(calendar), self.slot_count), dtype=bool)
        for block in gantry_day.qa_blocks:
            self.taken[:, self._slot_range(block.start_min, block.end_min)] = True

    def copy(self) -> GantryOccupancy:
        """An independent copy of this grid."""
        twin = GantryOccupancy(self.calendar, self.gantry_day)
        twin.taken = self.taken.copy()
        return twin

    def ready_day(self, course: Course) -> int:
        """Index of the course's first allowed working day (its ready date or later)."""
        return self.calendar.index_on_or_after(course.ready_date)

    def _slot_range(self, start_min: int, end_min: int) -> slice:
        opening = self.gantry_day.opening_min
        first = max(0, (start_min - opening) // self.step_min)
        last = min(self.slot_count, math.ceil((end_min - opening) / self.step_min))
        return slice(first, max(first, last))

    def block(self, day_index: int, start_min: int, end_min: int) -> None:
        """Mark ``[start_min, end_min)`` of working day ``day_index`` as taken."""
        self.taken[day_index, self._slot_range(start_min, end_min)] = True

    def block_booking(self, booking: Booking) -> None:
        """Mark a booking's time as taken (ignored if its day is not in the calendar)."""
        index = self.calendar.index_on_or_after(booking.day)
        if index < len(self.calendar) and self.calendar.days[index] == booking.day:
            self.block(index, booking.start_min, booking.end_min)

    def block_downtime(self, downtime: Downtime) -> None:
        """Mark a downtime as taken (ignored if its day is not in the calendar)."""
        index = self.calendar.index_on_or_after(downtime.day)
        if index < len(self.calendar) and self.calendar.days[index] == downtime.day:
            self.block(index, downtime.start_min, downtime.end_min)

    def free_minutes(self) -> np.ndarray:
        """Free minutes of each working day."""
        return (~self.taken).sum(axis=1) * self.step_min

    def free_minutes_between(self, start_min: int, end_min: int) -> np.ndarray:
        """Free minutes of each working day inside ``[start_min, end_min)``."""
        return (~self.taken[:, self._slot_range(start_min, end_min)]).sum(axis=1) * self.step_min

    def _feasible_starts(
        self, first_day: int, durations_slots: np.ndarray, lo: int, hi: np.ndarray
    ):
        """Boolean (n, slots): session i may start at slot t on day ``first_day + i``."""
        count = len(durations_slots)
        rows = self.taken[first_day : first_day + count].astype(np.int32)
        cumulative = np.zeros((count, self.slot_count + 1), dtype=np.int32)
        np.cumsum(rows, axis=1, out=cumulative[:, 1:])
        starts = np.arange(self.slot_count)
        ends = starts[None, :] + durations_slots[:, None]
        inside = ends <= self.slot_count
        taken_count = (
            np.take_along_axis(cumulative, np.minimum(ends, self.slot_count), axis=1)
            - cumulative[:, : self.slot_count]
        )
        in_window = (starts[None, :] >= lo) & (starts[None, :] <= hi[:, None])
        return inside & in_window & (taken_count == 0)

    def _session_slots(self, course: Course, count: int):
        """Durations (min), durations (slots), latest start slot of each session."""
        gantry_day = self.gantry_day
        numbers = range(course.first_fraction_number, course.first_fraction_number + count)
        durations = np.array([session_duration_min(gantry_day, course, n) for n in numbers])
        durations_slots = -(-durations // self.step_min)
        latest = np.array([start_window_min(gantry_day, course, int(d))[1] for d in durations])
        earliest = start_window_min(gantry_day, course, int(durations[0]))[0]
        opening = gantry_day.opening_min
        lo = -(-(earliest - opening) // self.step_min)
        hi = (latest - opening) // self.step_min
        return durations, durations_slots, lo, hi

    def try_place(
        self,
        course: Course,
        start_day: int,
        mode: str = "first_fit",
        max_shift_min: int | None = None,
    ) -> Placement | None:
        """Place ``course`` from working day ``start_day`` if it fits, else ``None``.

        ``mode="first_fit"`` takes the earliest usual time that works; ``mode="best"`` the one
        with fewest sessions outside the usual window, then the smallest total shift.
        ``max_shift_min`` overrides the configured largest shift from the usual time.
        """
        count = course.fraction_count
        if start_day + count > len(self.calendar):
            return None
        durations, durations_slots, lo, hi = self._session_slots(course, count)
        feasible = self._feasible_starts(start_day, durations_slots, lo, hi)
        distance, chosen = _nearest_true(feasible)
        if max_shift_min is None:
            max_shift_min = self.gantry_day.max_start_shift_min
        shift_slots = max_shift_min // self.step_min
        window_slots = self.gantry_day.usual_window_min // self.step_min
        ok = (distance <= shift_slots).all(axis=0)
        ok[: max(lo, 0)] = False
        ok[int(hi.max()) + 1 :] = False
        if course.usual_start_min is not None:
            pinned = (course.usual_start_min - self.gantry_day.opening_min) // self.step_min
            keep = np.zeros_like(ok)
            if 0 <= pinned < self.slot_count:
                keep[pinned] = True
            ok &= keep
        if not ok.any():
            return None
        if mode == "first_fit":
            usual = int(np.argmax(ok))
        else:
            outside = (distance > window_slots).sum(axis=0)
            cost = outside * 10_000 + distance.sum(axis=0) + self._reserve_cost(course)
            usual = int(np.argmin(np.where(ok, cost, _FAR * 10_000)))
        opening = self.gantry_day.opening_min
        starts = tuple(int(opening + chosen[i, usual] * self.step_min) for i in range(count))
        return Placement(
            start_day_index=start_day,
            usual_start_min=opening + usual * self.step_min,
            start_mins=starts,
            duration_mins=tuple(int(d) for d in durations),
        )

    def _reserve_cost(self, course: Course) -> np.ndarray | int:
        """Cost of each usual time for keeping the early-morning anaesthesia slots free.

        Children under anaesthesia can only be treated early, so other courses avoid it
        (at a cost below one session outside the usual window).
        """
        if self.gantry_day.categories[course.category].anaesthesia:
            return 0
        first, last = anaesthesia_reserve_min(self.gantry_day)
        opening = self.gantry_day.opening_min
        duration = session_duration_min(self.gantry_day, course, course.first_fraction_number + 1)
        starts = opening + np.arange(self.slot_count) * self.step_min
        return np.where((starts < last) & (starts + duration > first), RESERVE_COST, 0)

    def commit(self, placement: Placement) -> None:
        """Mark a placement's sessions as taken."""
        for offset, (start, duration) in enumerate(
            zip(placement.start_mins, placement.duration_mins, strict=True)
        ):
            self.block(placement.start_day_index + offset, start, start + duration)

    def first_fit(
        self,
        course: Course,
        earliest_day: int,
        mode: str = "first_fit",
        max_shift_min: int | None = None,
    ) -> Placement | None:
        """The placement on the earliest working day, from ``earliest_day``, where it fits."""
        for start_day in range(earliest_day, len(self.calendar) - course.fraction_count + 1):
            placement = self.try_place(course, start_day, mode, max_shift_min)
            if placement is not None:
                return placement
        return None


def _nearest_true(feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row and column u: distance to, and index of, the nearest True in the row."""
    columns = np.arange(feasible.shape[1])
    left = np.maximum.accumulate(np.where(feasible, columns, -_FAR), axis=1)
    right = np.minimum.accumulate(np.where(feasible, columns, _FAR)[:, ::-1], axis=1)[:, ::-1]
    left_distance = columns - left
    right_distance = right - columns
    use_left = left_distance <= right_distance
    return np.where(use_left, left_distance, right_distance), np.where(use_left, left, right)


def bookings_from_placement(course: Course, placement: Placement, calendar: WorkingCalendar):
    """The bookings of a placed course."""
    return tuple(
        Booking(
            course_id=course.course_id,
            fraction_number=course.first_fraction_number + offset,
            gantry_id=course.gantry_id,
            day=calendar.days[placement.start_day_index + offset],
            start_min=start,
            duration_min=duration,
        )
        for offset, (start, duration) in enumerate(
            zip(placement.start_mins, placement.duration_mins, strict=True)
        )
    )


def occupancies_for(problem) -> tuple[WorkingCalendar, dict[str, GantryOccupancy]]:
    """The working calendar of a problem and one occupancy grid per gantry.

    Fixed bookings and downtimes are already marked as taken.
    """
    calendar = WorkingCalendar.between(problem.start_date, problem.end_date, problem.closed_dates)
    grids = {gantry: GantryOccupancy(calendar, problem.gantry_day) for gantry in problem.gantry_ids}
    for booking in problem.fixed_bookings:
        if booking.gantry_id in grids:
            grids[booking.gantry_id].block_booking(booking)
    for downtime in problem.downtimes:
        if downtime.gantry_id in grids:
            grids[downtime.gantry_id].block_downtime(downtime)
    return calendar, grids
