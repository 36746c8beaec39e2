"""Payments and refunds against a quote; no first session before full payment."""

from datetime import date
from decimal import Decimal

import pytest

from protonpath.international.rules.payment import (
    Payment,
    PaymentKind,
    PaymentMethod,
    may_schedule_first_session,
    payment_balance,
)

TOTAL = Decimal("45000.00")


def pay(amount, kind=PaymentKind.PAYMENT, reference="TRX-1"):
    return Payment(kind, Decimal(amount), date(2027, 1, 5), PaymentMethod.BANK_TRANSFER, reference)


def test_nothing_paid_blocks_scheduling():
    balance = payment_balance(TOTAL, [])
    assert balance.balance_due_eur == TOTAL
    assert not balance.paid_in_full
    assert not may_schedule_first_session(balance)


def test_partial_payments_add_up_to_full_payment():
    first = payment_balance(TOTAL, [pay("20000")])
    assert first.balance_due_eur == Decimal("25000.00")
    assert not may_schedule_first_session(first)
    full = payment_balance(TOTAL, [pay("20000"), pay("25000", reference="TRX-2")])
    assert full.paid_in_full and full.balance_due_eur == 0
    assert may_schedule_first_session(full)


def test_a_refund_reopens_the_balance():
    balance = payment_balance(
        TOTAL, [pay("45000"), pay("5000", kind=PaymentKind.REFUND, reference="RF-1")]
    )
    assert balance.refunded_eur == Decimal("5000.00")
    assert balance.net_paid_eur == Decimal("40000.00")
    assert not may_schedule_first_session(balance)


def test_overpayment_is_shown_for_refund():
    balance = payment_balance(TOTAL, [pay("45100")])
    assert balance.paid_in_full
    assert balance.overpaid_eur == Decimal("100.00")


def test_refunds_cannot_exceed_payments():
    with pytest.raises(ValueError, match="exceed"):
        payment_balance(TOTAL, [pay("100"), pay("200", kind=PaymentKind.REFUND)])


@pytest.mark.parametrize("amount, reference", [("0", "X"), ("-10", "X"), ("10", "  ")])
def test_invalid_payments_are_refused(amount, reference):
    with pytest.raises(ValueError):
        pay(amount, reference=reference)


def test_kind_and_method_may_be_given_as_strings():
    payment = Payment("refund", "12.5", date(2027, 1, 5), "card", "CB-9")
    assert payment.kind is PaymentKind.REFUND and payment.method is PaymentMethod.CARD
    assert payment.amount_eur == Decimal("12.50")
    with pytest.raises(ValueError):
        Payment("gift", "1", date(2027, 1, 5), "card", "X")
