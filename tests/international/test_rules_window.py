"""The Schengen 90/180-day rule, checked against an independent day-by-day count."""

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protonpath.international.rules.stay import StayPeriod
from protonpath.international.rules.visa import check_rolling_window, earliest_compliant_first_day

D = date(2027, 3, 1)


def reference_count(day, stays, window_days=180):
    """Days of presence in the window ending on ``day``, counted one calendar day at a time."""
    count = 0
    for back in range(window_days):
        candidate = day - timedelta(days=back)
        if any(s.first_day <= candidate <= s.last_day for s in stays):
            count += 1
    return count


def reference_check(planned, earlier, limit_days=90, window_days=180):
    stays = [*earlier, planned]
    counts = []
    day = planned.first_day
    while day <= planned.last_day:
        counts.append((day, reference_count(day, stays, window_days)))
        day += timedelta(days=1)
    over = [d for d, c in counts if c > limit_days]
    return max(c for _, c in counts), (over[0] if over else None)


@st.composite
def trips(draw):
    start = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)))
    planned = StayPeriod(start, start + timedelta(days=draw(st.integers(0, 200))))
    earlier = []
    for _ in range(draw(st.integers(0, 4))):
        ends_before = draw(st.integers(1, 400))
        length = draw(st.integers(0, 120))
        last = start - timedelta(days=ends_before)
        earlier.append(StayPeriod(last - timedelta(days=length), last))
    return planned, earlier


@settings(max_examples=300, deadline=None)
@given(trips())
def test_matches_day_by_day_reference(trip):
    planned, earlier = trip
    result = check_rolling_window(planned, earlier)
    expected_max, expected_first_over = reference_check(planned, earlier)
    assert result.max_days_in_window == expected_max
    assert result.first_day_over_limit == expected_first_over
    assert result.compliant == (expected_first_over is None)


@settings(max_examples=100, deadline=None)
@given(trips(), st.integers(20, 120), st.integers(0, 60))
def test_matches_reference_with_other_rule_parameters(trip, limit, extra_window):
    planned, earlier = trip
    window = limit + extra_window
    result = check_rolling_window(planned, earlier, limit_days=limit, window_days=window)
    assert (result.max_days_in_window, result.first_day_over_limit) == reference_check(
        planned, earlier, limit, window
    )


@settings(max_examples=100, deadline=None)
@given(trips())
def test_stay_shortened_to_last_compliant_day_is_compliant(trip):
    planned, earlier = trip
    result = check_rolling_window(planned, earlier)
    if result.compliant or result.last_compliant_day < planned.first_day:
        return
    shortened = StayPeriod(planned.first_day, result.last_compliant_day)
    assert check_rolling_window(shortened, earlier).compliant


@settings(max_examples=60, deadline=None)
@given(trips())
def test_earliest_compliant_start_is_compliant_and_earliest(trip):
    planned, earlier = trip
    start = earliest_compliant_first_day(planned.days, earlier, planned.first_day)
    if planned.days > 90:
        assert start is None
        return
    length = timedelta(days=planned.days - 1)
    assert reference_check(StayPeriod(start, start + length), earlier)[1] is None
    if start > planned.first_day:
        before = start - timedelta(days=1)
        assert reference_check(StayPeriod(before, before + length), earlier)[1] is not None


def test_exactly_90_days_is_allowed_and_91_is_not():
    assert check_rolling_window(StayPeriod(D, D + timedelta(days=89))).compliant
    result = check_rolling_window(StayPeriod(D, D + timedelta(days=90)))
    assert result.first_day_over_limit == D + timedelta(days=90)
    assert result.last_compliant_day == D + timedelta(days=89)


def test_days_of_entry_and_exit_both_count():
    one_day = check_rolling_window(StayPeriod(D, D))
    assert one_day.max_days_in_window == 1


def test_earlier_stay_within_180_days_counts():
    earlier = StayPeriod(D - timedelta(days=100), D - timedelta(days=61))  # 40 days
    planned = StayPeriod(D, D + timedelta(days=59))  # 60 days
    result = check_rolling_window(planned, [earlier])
    assert result.max_days_in_window == 100
    assert not result.compliant


def test_earlier_stay_older_than_180_days_does_not_count():
    earlier = StayPeriod(D - timedelta(days=400), D - timedelta(days=311))  # 90 days, long ago
    planned = StayPeriod(D, D + timedelta(days=89))
    assert check_rolling_window(planned, [earlier]).compliant


def test_earlier_days_leave_the_window_as_the_stay_goes_on():
    # 60 days ending 120 days before arrival: one leaves the window for each day of the stay.
    earlier = StayPeriod(D - timedelta(days=179), D - timedelta(days=120))
    assert check_rolling_window(StayPeriod(D, D), [earlier]).max_days_in_window == 61
    full_stay = check_rolling_window(StayPeriod(D, D + timedelta(days=89)), [earlier])
    assert full_stay.compliant
    assert full_stay.max_days_in_window == 90


def test_overlapping_earlier_stays_count_each_day_once():
    a = StayPeriod(D - timedelta(days=50), D - timedelta(days=21))
    b = StayPeriod(D - timedelta(days=40), D - timedelta(days=11))
    result = check_rolling_window(StayPeriod(D, D), [a, b])
    assert result.max_days_in_window == 41


def test_earlier_stay_must_end_before_planned_stay():
    with pytest.raises(ValueError, match="does not end before"):
        check_rolling_window(
            StayPeriod(D, D + timedelta(days=5)), [StayPeriod(D - timedelta(days=3), D)]
        )


def test_invalid_rule_parameters_are_refused():
    with pytest.raises(ValueError):
        check_rolling_window(StayPeriod(D, D), limit_days=100, window_days=90)


def test_earliest_compliant_start_after_a_long_earlier_stay():
    earlier = StayPeriod(D - timedelta(days=89), D - timedelta(days=1))  # 89 days just before
    start = earliest_compliant_first_day(10, [earlier], D)
    # The window ending on the stay's last day holds 89 earlier days at first: the start must
    # wait until enough of them have left it.
    assert start is not None and start > D
    assert check_rolling_window(StayPeriod(start, start + timedelta(days=9)), [earlier]).compliant
    previous = start - timedelta(days=1)
    assert not check_rolling_window(
        StayPeriod(previous, previous + timedelta(days=9)), [earlier]
    ).compliant
