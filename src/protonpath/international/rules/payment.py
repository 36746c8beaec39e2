"""The balance of a quote: payments and refunds recorded against it.

A foreign patient's first session can be scheduled only once the quote is paid in full.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from protonpath.international.rules.quote import money_eur


class PaymentKind(StrEnum):
    """Money received from the patient, or given back (e.g. on cancellation)."""

    PAYMENT = "payment"
    REFUND = "refund"


class PaymentMethod(StrEnum):
    """How the money moved."""

    BANK_TRANSFER = "bank_transfer"
    CARD = "card"
    CHEQUE = "cheque"
    CASH = "cash"
    OTHER = "other"


@dataclass(frozen=True)
class Payment:
    """One recorded movement of money for a quote.

    Attributes
    ----------
    kind : PaymentKind
    amount_eur : Decimal
        Positive amount; a refund is recorded with ``kind=REFUND``, not a negative amount.
    paid_on : datetime.date
    method : PaymentMethod
    reference : str
        Bank or card reference, required.
    """

    kind: PaymentKind
    amount_eur: Decimal
    paid_on: date
    method: PaymentMethod
    reference: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", PaymentKind(self.kind))
        object.__setattr__(self, "method", PaymentMethod(self.method))
        object.__setattr__(self, "amount_eur", money_eur(self.amount_eur))
        if self.amount_eur <= 0:
            raise ValueError(f"An amount must be positive, got {self.amount_eur}.")
        if not self.reference.strip():
            raise ValueError("A payment needs its reference.")


@dataclass(frozen=True)
class PaymentBalance:
    """Where a quote stands.

    Attributes
    ----------
    quote_total_eur : Decimal
    paid_eur : Decimal
        Sum of the payments.
    refunded_eur : Decimal
        Sum of the refunds.
    net_paid_eur : Decimal
        ``paid_eur - refunded_eur``.
    balance_due_eur : Decimal
        What remains to pay (zero when paid in full).
    overpaid_eur : Decimal
        What was paid beyond the total (to refund).
    """

    quote_total_eur: Decimal
    paid_eur: Decimal
    refunded_eur: Decimal
    net_paid_eur: Decimal
    balance_due_eur: Decimal
    overpaid_eur: Decimal

    @property
    def paid_in_full(self) -> bool:
        """True when the net payments cover the quote."""
        return self.balance_due_eur == 0


def payment_balance(quote_total_eur: Decimal, payments: Iterable[Payment]) -> PaymentBalance:
    """Return the balance of a quote from its payments and refunds.

    Raises
    ------
    ValueError
        If the refunds exceed the payments, or the total is negative.
    """
    total = money_eur(quote_total_eur)
    if total < 0:
        raise ValueError(f"A quote total cannot be negative ({total}).")
    payments = tuple(payments)
    paid = sum((p.amount_eur for p in payments if p.kind is PaymentKind.PAYMENT), Decimal("0.00"))
    refunded = sum(
        (p.amount_eur for p in payments if p.kind is PaymentKind.REFUND), Decimal("0.00")
    )
    if refunded > paid:
        raise ValueError(f"Refunds ({refunded} EUR) exceed payments ({paid} EUR).")
    net = paid - refunded
    return PaymentBalance(
        quote_total_eur=total,
        paid_eur=paid,
        refunded_eur=refunded,
        net_paid_eur=net,
        balance_due_eur=max(total - net, Decimal("0.00")),
        overpaid_eur=max(net - total, Decimal("0.00")),
    )


def may_schedule_first_session(balance: PaymentBalance) -> bool:
    """A foreign patient's first session may be scheduled only once the quote is paid in full."""
    return balance.paid_in_full


def iban_is_valid(iban: str) -> bool:
    """ISO 13616 check: country letters, two check digits, then the account; mod 97 of the
    rearranged number is 1. Spaces are ignored."""
    compact = iban.replace(" ", "").upper()
    if not (15 <= len(compact) <= 34) or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    if not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def normalised_reference(reference: str) -> str:
    """A bank reference as banks compare them: no spaces, dashes or case."""
    return "".join(c for c in reference.casefold() if c.isalnum())


class PaymentWarningCode(StrEnum):
    OVERPAYMENT = "overpayment"
    REUSED_REFERENCE = "reused_reference"


@dataclass(frozen=True)
class PaymentWarning:
    """Something staff must confirm before a payment is recorded.

    Attributes
    ----------
    code : PaymentWarningCode
    amount_eur : Decimal
        For an overpayment, what would be paid beyond the total.
    """

    code: PaymentWarningCode
    amount_eur: Decimal = Decimal("0.00")


def payment_warnings(
    quote_total_eur: Decimal,
    recorded: Iterable[Payment],
    new: Payment,
    references_in_use: Iterable[str] = (),
) -> tuple[PaymentWarning, ...]:
    """What looks wrong in recording ``new``: it would pay more than the quote's total, or its
    reference was already recorded (for this quote in ``recorded`` or elsewhere in
    ``references_in_use``): the same transfer entered twice, as a rule. Refunds warn of neither."""
    if new.kind is not PaymentKind.PAYMENT:
        return ()
    recorded = list(recorded)
    warnings: list[PaymentWarning] = []
    after = payment_balance(quote_total_eur, [*recorded, new])
    if after.overpaid_eur > 0:
        warnings.append(PaymentWarning(PaymentWarningCode.OVERPAYMENT, after.overpaid_eur))
    reference = normalised_reference(new.reference)
    used = {normalised_reference(p.reference) for p in recorded} | {normalised_reference(r) for r in references_in_use}
    if reference and reference in used:
        warnings.append(PaymentWarning(PaymentWarningCode.REUSED_REFERENCE))
    return tuple(warnings)
