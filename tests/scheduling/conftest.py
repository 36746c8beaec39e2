"""Fixtures for the Django side of scheduling: requests ready for a first consultation, days to book."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.apps import apps
from django.utils import timezone

from protonpath.referrals import services as referral_services
from tests.factories import advance_to, make_request


@pytest.fixture
def domestic_accepted(doctor, staff, oncologist):
    """A request of a patient covered by French insurance, accepted, decision sent."""
    r = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "accepted",
        staff=staff,
        oncologist=oncologist,
    )
    referral_services.send_decision(actor=staff, treatment_request=r)
    r.refresh_from_db()
    return r


@pytest.fixture
def international_accepted(patient, staff, oncologist):
    """A request of a patient from abroad, accepted (quote not paid)."""
    return advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)


def pay_in_full(treatment_request, *, staff, owner):
    """Walk an accepted international request through quote and full payment to 'paid'."""
    from protonpath.international import services as intl

    intl.load_illustrative_tariff(valid_from=datetime.date(2026, 1, 1))
    quote = intl.send_quote(
        actor=staff, quote=intl.build_quote(actor=staff, treatment_request=treatment_request)
    )
    quote = intl.accept_quote(actor=owner, quote=quote)
    intl.record_payment(
        actor=staff,
        quote=quote,
        amount_eur=Decimal(quote.total_eur),
        paid_on=timezone.localdate(),
        method="bank_transfer",
        reference="VIR-TEST",
    )
    intl.record_full_payment(actor=staff, treatment_request=treatment_request)
    treatment_request.refresh_from_db()
    return treatment_request


@pytest.fixture
def international_paid(international_accepted, staff, patient):
    assert apps.is_installed("protonpath.international")
    return pay_in_full(international_accepted, staff=staff, owner=patient)


@pytest.fixture
def patient_request(international_paid, staff, oncologist):
    """The patient's own request (from abroad), paid in full, first consultation booked."""
    from protonpath.scheduling import selectors, services

    day = selectors.next_days_with_hours(timezone.localdate() + datetime.timedelta(days=1), 1)[0]
    start = timezone.make_aware(datetime.datetime.combine(day, datetime.time(9)))
    services.book_consultation(
        actor=staff, treatment_request=international_paid, doctor=oncologist, start=start
    )
    international_paid.refresh_from_db()
    return international_paid
