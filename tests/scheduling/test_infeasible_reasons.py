"""InfeasibleScheduleError items (pure: course id, code, params beside the English sentence)."""

import dataclasses
import pickle
from datetime import date, timedelta

import pytest

from protonpath.scheduling.baseline import first_fit_schedule
from protonpath.scheduling.config import clock_to_min, default_gantry_day
from protonpath.scheduling.model import (
    Downtime,
    InfeasibleReason,
    InfeasibleScheduleError,
)
from protonpath.scheduling.solver import solve
from protonpath.scheduling.validation import validate_problem
from tests.scheduling.builders import FAST, course, invalid_courses, problem, short_anaesthesia_day


def test_a_ready_date_after_the_due_date_has_a_code_and_params():
    bad = course("late-plan", ready=date(2026, 7, 20), due=date(2026, 7, 10))
    with pytest.raises(InfeasibleScheduleError) as error:
        solve(problem(bad), FAST)
    (item,) = [i for i in error.value.items if i.code == "ready_after_due"]
    assert item == InfeasibleReason(
        "late-plan",
        "ready_after_due",
        "course late-plan: ready date 2026-07-20 is after its due date 2026-07-10",
        {"ready_date": "2026-07-20", "due_date": "2026-07-10"},
    )
    assert error.value.reasons == [i.message for i in error.value.items]
    assert str(error.value) == "Cannot schedule: " + "; ".join(error.value.reasons)


def test_each_validation_failure_is_coded():
    gantry_day = short_anaesthesia_day()
    courses = invalid_courses()
    with pytest.raises(InfeasibleScheduleError) as error:
        validate_problem(dataclasses.replace(problem(*courses), gantry_day=gantry_day))
    coded = {(i.course_id, i.code) for i in error.value.items}
    assert coded == {
        ("x", "unknown_category"),
        ("u", "unknown_urgency"),
        ("u", "unknown_gantry"),
        ("z", "no_fraction"),
        ("child", "session_window"),
        ("long", "beyond_horizon"),
        ("early", "usual_start_outside"),
        ("x", "duplicate_course"),
    }
    window = next(i for i in error.value.items if i.code == "session_window")
    assert window.params == {
        "duration_min": 60,
        "earliest": "08:40",
        "latest": "18:10",
        "closing": "18:30",
    }


def test_late_starts_and_no_room_are_coded():
    gantry_day = dataclasses.replace(default_gantry_day(), closing_min=clock_to_min("09:40"))
    courses = [
        course(name, fractions=5, due=date(2026, 7, 7), urgency="urgent") for name in ("u1", "u2")
    ]
    with pytest.raises(InfeasibleScheduleError) as error:
        solve(dataclasses.replace(problem(*courses), gantry_day=gantry_day), FAST)
    (item,) = error.value.items
    assert item.code == "late_start" and item.course_id in ("u1", "u2")
    assert item.params["urgency"] == "urgent" and item.params["due_date"] == "2026-07-07"

    closed = tuple(
        Downtime("G1", date(2026, 7, 1) + timedelta(days=n), 0, 24 * 60) for n in range(92)
    )
    for method in (lambda p: solve(p, FAST), first_fit_schedule):
        with pytest.raises(InfeasibleScheduleError) as error:
            method(problem(course("a"), downtimes=closed))
        assert [(i.course_id, i.code, dict(i.params)) for i in error.value.items] == [
            ("a", "no_room", {"end_date": "2026-09-30"})
        ]


def test_plain_string_reasons_still_work_and_the_error_pickles():
    error = InfeasibleScheduleError(["something odd"])
    assert error.items == (InfeasibleReason("", "", "something odd"),)
    assert str(error) == "Cannot schedule: something odd"
    coded = InfeasibleScheduleError(
        [InfeasibleReason("a", "no_room", "course a: no room", {"end_date": "2026-09-30"})]
    )
    again = pickle.loads(pickle.dumps(coded))
    assert again.items == coded.items and str(again) == str(coded)
