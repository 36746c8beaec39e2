"""The visa assessment of a request, from its database rows, against a day-by-day count (hypothesis)."""

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protonpath.international import selectors, services
from protonpath.international.models import DeclaredStay

pytestmark = pytest.mark.django_db

TODAY = datetime.date.today()


def days_over_limit(planned_days: set[datetime.date], earlier_days: set[datetime.date]) -> datetime.date | None:
    """Reference: the first planned day whose 180-day window holds more than 90 days of presence."""
    present = planned_days | earlier_days
    for day in sorted(planned_days):
        window = {day - datetime.timedelta(days=k) for k in range(180)}
        if len(present & window) > 90:
            return day
    return None


stays = st.lists(
    st.tuples(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=60)),
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(declared=stays)
def test_a_visa_exempt_companions_verdict_counts_every_declared_day(accepted, patient, declared):
    DeclaredStay.objects.all().delete()
    accepted.companions.all().delete()
    american = services.add_companion(
        actor=patient, treatment_request=accepted, data={"first_name": "John", "last_name": "Smith", "nationality": "US", "relationship": "husband"}
    )
    earlier_days: set[datetime.date] = set()
    for ended_days_ago, length in declared:
        exit_on = TODAY - datetime.timedelta(days=ended_days_ago)
        entry_on = exit_on - datetime.timedelta(days=length)
        services.add_declared_stay(actor=patient, treatment_request=accepted, companion=american, entry_on=entry_on, exit_on=exit_on)
        earlier_days |= {entry_on + datetime.timedelta(days=k) for k in range(length + 1)}
    # The patient's own declared stays never count for the companion.
    services.add_declared_stay(actor=patient, treatment_request=accepted, entry_on=TODAY - datetime.timedelta(days=100), exit_on=TODAY - datetime.timedelta(days=20))

    assessment = selectors.visa_assessment(accepted)
    stay = assessment.expected.stay
    planned_days = set(stay.dates())
    verdict = next(t for t in assessment.trip.companions if t.reference == str(american.pk))
    expected_first_over = days_over_limit(planned_days, earlier_days)
    assert verdict.window.first_day_over_limit == expected_first_over
    assert verdict.requirement == ("long_stay_visa" if expected_first_over else "none")
