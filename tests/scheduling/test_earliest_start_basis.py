"""The earliest-start hint rests on the plan-ready date (issue 12, item 13).

It counted the planning time from today whatever the request's facts: a first consultation
booked in six weeks, or a plan already approved, gave the same date; and it said "For 1
fractions".
"""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from protonpath.imaging.models import Instance, Series
from protonpath.referrals import services as referral_services
from protonpath.scheduling import selectors, services
from protonpath.scheduling.calendar import add_working_days
from protonpath.treatment.models import Plan, Prescription
from tests.factories import advance_to, make_request

pytestmark = pytest.mark.django_db

LEAD = selectors.PLANNING_LEAD_WORKING_DAYS


def at(day: datetime.date, hour: int) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour)))


def accepted(doctor, staff, oncologist):
    r = advance_to(make_request(doctor, covered_by_french_insurance=True), "accepted", staff=staff, oncologist=oncologist)
    referral_services.send_decision(actor=staff, treatment_request=r)
    r.refresh_from_db()
    return r


def book_first_consultation(r, staff, oncologist, from_day: datetime.date) -> datetime.date:
    day = selectors.next_days_with_hours(from_day, 1)[0]
    start = at(day, 8)
    for _attempt in range(200):
        try:
            consultation = services.book_consultation(actor=staff, treatment_request=r, doctor=oncologist, start=start)
            return timezone.localdate(consultation.start)
        except ValidationError:
            start += datetime.timedelta(hours=1)
    raise AssertionError("no consultation slot found")


def test_without_a_consultation_the_plan_is_counted_from_today(doctor, staff, oncologist):
    r = accepted(doctor, staff, oncologist)
    estimate = selectors.earliest_start(r)
    today = timezone.localdate()
    assert estimate.basis == selectors.ReadyBasis.TODAY
    assert estimate.ready_date == add_working_days(today + datetime.timedelta(days=1), LEAD)


def test_a_consultation_booked_in_six_weeks_pushes_the_plan_ready_date(doctor, staff, oncologist):
    r = accepted(doctor, staff, oncologist)
    today = timezone.localdate()
    from_today = add_working_days(today + datetime.timedelta(days=1), LEAD)
    consultation_day = book_first_consultation(r, staff, oncologist, today + datetime.timedelta(days=42))
    estimate = selectors.earliest_start(r)
    assert estimate.basis == selectors.ReadyBasis.CONSULTATION and estimate.basis_day == consultation_day
    assert estimate.ready_date == add_working_days(consultation_day + datetime.timedelta(days=1), LEAD)
    assert estimate.ready_date > from_today
    assert estimate.first_day is not None and estimate.first_day >= estimate.ready_date


def _approve_a_plan(r, physicist, oncologist, approved_on: datetime.datetime) -> Plan:
    series = Series.objects.filter(study__treatment_request=r).first()
    instance = Instance.objects.filter(series=series).first()
    assert series is not None and instance is not None
    prescription = Prescription.objects.create(
        treatment_request=r, version=1, target="PTV", dose_gy=60, fractions=30, created_by=oncologist
    )
    return Plan.objects.create(
        treatment_request=r, version=1, prescription=prescription, category="adult_standard",
        ct_series=series, rtstruct=instance, state="approved", created_by=physicist,
        physicist_approved_by=physicist, physicist_approved_at=approved_on,
        oncologist_approved_by=oncologist, oncologist_approved_at=approved_on,
    )


def test_an_approved_plan_is_ready_now_not_in_three_weeks(doctor, staff, oncologist, physicist):
    r = accepted(doctor, staff, oncologist)
    today = timezone.localdate()
    book_first_consultation(r, staff, oncologist, today + datetime.timedelta(days=1))
    _approve_a_plan(r, physicist, oncologist, timezone.now())
    estimate = selectors.earliest_start(r)
    assert estimate.basis == selectors.ReadyBasis.APPROVED_PLAN and estimate.basis_day == today
    assert estimate.ready_date == add_working_days(today + datetime.timedelta(days=1), 0)
    assert estimate.first_day == estimate.ready_date  # an empty gantry


def test_a_plan_only_calculated_does_not_count_as_ready(doctor, staff, oncologist, physicist):
    r = accepted(doctor, staff, oncologist)
    plan = _approve_a_plan(r, physicist, oncologist, timezone.now())
    plan.state = "calculated"
    plan.save()
    assert selectors.earliest_start(r).basis == selectors.ReadyBasis.TODAY


@pytest.mark.parametrize(
    ("language", "one", "wrong"),
    [("en", "For 1 fraction,", "1 fractions"), ("fr", "Pour 1 fraction,", "1 fractions")],
)
def test_the_hint_says_one_fraction_and_its_basis(client, doctor, staff, oncologist, language, one, wrong):
    r = accepted(doctor, staff, oncologist)
    r.proposed_fractions = 1
    r.save(update_fields=["proposed_fractions"])
    consultation_day = book_first_consultation(r, staff, oncologist, timezone.localdate() + datetime.timedelta(days=42))
    client.force_login(staff)
    html = client.get(f"/requests/{r.pk}/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    hint = html[html.index('id="earliest-basis"'):]
    hint = " ".join(hint[: hint.index("</small>")].split()).replace("\u00a0", " ")
    assert one in hint and wrong not in hint
    with translation.override(language):
        from django.utils.formats import date_format

        assert date_format(consultation_day, "j F Y") in hint
    translation.activate("en")
