"""Stay periods and the expected stay of a course, on French working days."""

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protonpath.international.rules.stay import (
    StayPeriod,
    expected_stay,
    french_public_holidays,
    is_working_day,
    working_days_after,
)


def test_days_and_nights_count_both_ends():
    stay = StayPeriod(date(2027, 1, 4), date(2027, 1, 8))
    assert stay.days == 5
    assert stay.nights == 4
    assert list(stay.dates())[0] == date(2027, 1, 4) and list(stay.dates())[-1] == date(2027, 1, 8)


def test_a_stay_cannot_end_before_it_starts():
    with pytest.raises(ValueError, match="cannot end"):
        StayPeriod(date(2027, 1, 8), date(2027, 1, 4))


def test_datetimes_and_strings_are_refused():
    with pytest.raises(TypeError):
        StayPeriod(datetime(2027, 1, 4, 9), date(2027, 1, 8))
    with pytest.raises(TypeError):
        StayPeriod("2027-01-04", date(2027, 1, 8))


def test_french_public_holidays_include_national_day_and_easter_monday():
    closed = french_public_holidays([2027])
    assert date(2027, 7, 14) in closed
    assert date(2027, 3, 29) in closed  # Easter Monday 2027
    assert date(2027, 7, 15) not in closed


def test_course_of_30_fractions_without_holidays_lasts_six_weeks():
    # Consultation on Monday 4 January 2027; the 10th working day after is Monday 18 January.
    result = expected_stay(date(2027, 1, 4), 30)
    assert result.first_fraction_day == date(2027, 1, 18)
    assert result.last_fraction_day == date(2027, 2, 26)
    assert len(result.fraction_days) == 30
    assert result.stay == StayPeriod(date(2027, 1, 3), date(2027, 2, 27))


def test_holidays_push_the_course_back():
    # Consultation on Monday 19 April 2027: Ascension (Thursday 6 May) and Whit Monday (17 May)
    # fall within the course (1 and 8 May 2027 are Saturdays).
    result = expected_stay(date(2027, 4, 19), 20, planning_working_days=5)
    assert result.first_fraction_day == date(2027, 4, 26)
    closed = french_public_holidays([2027])
    assert not set(result.fraction_days) & closed
    assert all(day.weekday() < 5 for day in result.fraction_days)
    assert date(2027, 5, 6) not in result.fraction_days
    assert date(2027, 5, 17) not in result.fraction_days
    assert result.last_fraction_day == date(2027, 5, 25)  # 21 May without the two holidays


def test_arrival_and_departure_margins():
    result = expected_stay(
        date(2027, 1, 4), 1, planning_working_days=1, arrival_days_before=3, departure_days_after=0
    )
    assert result.stay == StayPeriod(date(2027, 1, 1), date(2027, 1, 5))


def test_custom_closed_days_replace_the_holidays():
    maintenance = {date(2027, 1, 19)}
    result = expected_stay(date(2027, 1, 4), 2, closed_days=maintenance)
    assert result.fraction_days == (date(2027, 1, 18), date(2027, 1, 20))


def test_consultation_must_be_on_a_working_day():
    with pytest.raises(ValueError, match="not a working day"):
        expected_stay(date(2027, 7, 14), 10)
    with pytest.raises(ValueError, match="not a working day"):
        expected_stay(date(2027, 1, 9), 10)  # a Saturday


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fractions": 0},
        {"fractions": 5, "planning_working_days": 0},
        {"fractions": 5, "arrival_days_before": -1},
    ],
)
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        expected_stay(date(2027, 1, 4), **kwargs)


@settings(max_examples=80, deadline=None)
@given(
    st.dates(min_value=date(2025, 1, 1), max_value=date(2035, 12, 31)),
    st.integers(1, 45),
    st.integers(1, 20),
)
def test_fractions_fall_on_consecutive_working_days(start, fractions, planning):
    closed = french_public_holidays(range(start.year, start.year + 3))
    while not is_working_day(start, closed):
        start += timedelta(days=1)
    result = expected_stay(start, fractions, planning_working_days=planning)
    days = result.fraction_days
    assert len(days) == fractions
    assert all(is_working_day(d, closed) for d in days)
    # No working day is skipped between two fractions, nor between consultation and planning.
    between = [start + timedelta(days=k) for k in range(1, (days[-1] - start).days + 1)]
    working = [d for d in between if is_working_day(d, closed)]
    assert working[planning - 1 :] == list(days)
    assert result.stay.first_day < start and result.stay.last_day > days[-1]


def test_working_days_after_needs_a_working_weekday():
    with pytest.raises(ValueError):
        working_days_after(date(2027, 1, 4), 3, set(), weekdays=())
    assert working_days_after(date(2027, 1, 4), 0, set()) == ()
