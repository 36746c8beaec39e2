"""Payments: recorded in full before the first consultation and session; partial payments and refunds."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from protonpath.accounts.models import AuditEvent
from protonpath.international import selectors, services
from protonpath.international.models import Payment
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State

pytestmark = pytest.mark.django_db

TODAY = datetime.date.today()


def pay(quote, staff, amount, kind="payment", reference="VIR-1"):
    return services.record_payment(
        actor=staff, quote=quote, amount_eur=amount, paid_on=TODAY, method="bank_transfer", reference=reference, kind=kind
    )


def test_partial_payment_is_recorded_but_not_enough(accepted_quote, staff):
    payment = pay(accepted_quote, staff, "10000.00")
    assert payment.amount_eur == Decimal("10000.00") and payment.recorded_by == staff
    balance = selectors.quote_balance(accepted_quote)
    assert balance.net_paid_eur == Decimal("10000.00")
    assert balance.balance_due_eur == accepted_quote.total_eur - Decimal("10000.00")
    assert not selectors.is_paid_in_full(accepted_quote.treatment_request)
    assert AuditEvent.objects.filter(action="create", object_type="international.payment", treatment_request_id=accepted_quote.treatment_request_id).exists()


def test_full_payment_cannot_be_recorded_until_paid(accepted_quote, staff):
    r = accepted_quote.treatment_request
    pay(accepted_quote, staff, accepted_quote.total_eur - Decimal("0.01"))
    with pytest.raises(ValidationError) as excinfo:
        services.record_full_payment(actor=staff, treatment_request=r)
    assert "not paid in full" in str(excinfo.value)
    r.refresh_from_db()
    assert r.state == State.QUOTE_ACCEPTED
    pay(accepted_quote, staff, "0.01", reference="VIR-2")
    services.record_full_payment(actor=staff, treatment_request=r)
    r.refresh_from_db()
    assert r.state == State.PAID


def test_the_first_consultation_of_a_foreign_patient_waits_for_full_payment(accepted_quote, staff):
    r = accepted_quote.treatment_request
    with pytest.raises(ValidationError):
        referral_services.perform(actor=staff, treatment_request=r, action="book_consultation")
    assert not selectors.may_schedule_first_session(r)
    pay(accepted_quote, staff, accepted_quote.total_eur)
    assert selectors.is_paid_in_full(r) and selectors.may_schedule_first_session(r)
    services.record_full_payment(actor=staff, treatment_request=r)
    referral_services.perform(actor=staff, treatment_request=r, action="book_consultation")
    r.refresh_from_db()
    assert r.state == State.CONSULTATION_BOOKED


def test_a_refund_after_full_payment_blocks_booking_again(accepted_quote, staff):
    r = accepted_quote.treatment_request
    pay(accepted_quote, staff, accepted_quote.total_eur)
    services.record_full_payment(actor=staff, treatment_request=r)
    pay(accepted_quote, staff, "500.00", kind="refund", reference="REM-1")
    assert not selectors.is_paid_in_full(r)
    with pytest.raises(ValidationError):
        referral_services.perform(actor=staff, treatment_request=r, action="book_consultation")


def test_refund_on_cancellation_is_recorded_and_cannot_exceed_what_was_paid(accepted_quote, staff, patient):
    r = accepted_quote.treatment_request
    pay(accepted_quote, staff, "20000.00")
    referral_services.cancel(actor=patient, treatment_request=r, reason="Treated closer to home.")
    with pytest.raises(ValidationError) as excinfo:
        pay(accepted_quote, staff, "20000.01", kind="refund", reference="REM-1")
    assert "exceed" in str(excinfo.value)
    pay(accepted_quote, staff, "20000.00", kind="refund", reference="REM-1")
    balance = selectors.quote_balance(accepted_quote)
    assert balance.net_paid_eur == 0 and balance.refunded_eur == Decimal("20000.00")


def test_domestic_patients_may_be_scheduled_without_a_quote(tariff, doctor, staff, oncologist):
    from tests.factories import advance_to, make_request

    r = advance_to(make_request(doctor, covered_by_french_insurance=True), "accepted", staff=staff, oncologist=oncologist)
    assert selectors.may_schedule_first_session(r)
    assert not selectors.is_paid_in_full(r)


@pytest.mark.parametrize(
    ("amount", "reference", "paid_on", "message"),
    [
        ("0", "VIR", TODAY, "positive"),
        ("-5", "VIR", TODAY, "positive"),
        ("12.5", "  ", TODAY, "reference"),
        ("abc", "VIR", TODAY, ""),
        ("100", "VIR", TODAY + datetime.timedelta(days=1), "future"),
    ],
)
def test_bad_payments_are_refused_and_nothing_is_recorded(accepted_quote, staff, amount, reference, paid_on, message):
    with pytest.raises(ValidationError) as excinfo:
        services.record_payment(
            actor=staff, quote=accepted_quote, amount_eur=amount, paid_on=paid_on, method="card", reference=reference
        )
    assert message in str(excinfo.value)
    assert not Payment.objects.exists()


def test_payments_need_an_accepted_quote_and_staff(accepted_quote, users):
    for name in ("patient", "doctor", "oncologist", "physicist"):
        with pytest.raises(PermissionDenied):
            pay(accepted_quote, users[name], "10.00")
    assert pay(accepted_quote, users["head"], "10.00").pk


def test_no_payment_against_a_quote_not_accepted(sent_quote, staff):
    with pytest.raises(ValidationError):
        pay(sent_quote, staff, "10.00")
