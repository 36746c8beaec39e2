"""Working days: Monday to Friday, French public holidays closed."""

from datetime import date

from protonpath.scheduling.calendar import (
    WorkingCalendar,
    add_working_days,
    due_date_for,
    is_working_day,
)


def test_bastille_day_and_weekends_are_closed():
    assert not is_working_day(date(2026, 7, 14))  # Tuesday, national day
    assert not is_working_day(date(2026, 7, 11))  # Saturday
    assert is_working_day(date(2026, 7, 15))


def test_closed_dates_are_not_working_days():
    assert not is_working_day(date(2026, 7, 15), frozenset({date(2026, 7, 15)}))


def test_add_working_days_skips_easter_monday():
    # Friday 3 April 2026, Easter Monday 6 April.
    assert add_working_days(date(2026, 4, 3), 1) == date(2026, 4, 7)


def test_add_zero_working_days_from_a_sunday_gives_monday():
    assert add_working_days(date(2026, 7, 12), 0) == date(2026, 7, 13)


def test_calendar_numbers_working_days_in_order():
    calendar = WorkingCalendar.between(date(2026, 7, 10), date(2026, 7, 17))
    assert calendar.days == (
        date(2026, 7, 10),
        date(2026, 7, 13),
        date(2026, 7, 15),
        date(2026, 7, 16),
        date(2026, 7, 17),
    )
    assert calendar.index_on_or_after(date(2026, 7, 14)) == 2
    assert calendar.index_on_or_before(date(2026, 7, 14)) == 1


def test_due_date_counts_working_days_from_the_ready_date():
    # Ready Friday 10 July 2026; 14 July is closed: 13, 15, 16 July.
    assert due_date_for(date(2026, 7, 10), 3) == date(2026, 7, 16)
