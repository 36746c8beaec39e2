"""What the letters for the consulate say, as data (the PDFs are rendered elsewhere).

The hospital writes one attestation for the patient (expected dates and duration of the
treatment, proof of advance payment) and one for each accompanying person who needs a visa
(with their relationship to the patient or the justification of their coming).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from protonpath.international.rules.countries import Country
from protonpath.international.rules.payment import Payment, PaymentKind, payment_balance
from protonpath.international.rules.stay import ExpectedStay
from protonpath.international.rules.visa import (
    ApplicationAdvice,
    Requirement,
    Role,
    TravellerAssessment,
    TripAssessment,
)


class LetterNotReadyError(ValueError):
    """Raised when letters cannot be written yet (missing information, quote not paid)."""


class LetterKind(StrEnum):
    """Who the letter is for."""

    PATIENT_ATTESTATION = "patient_attestation"
    COMPANION_ATTESTATION = "companion_attestation"


@dataclass(frozen=True)
class ConsulateLetter:
    """The facts of one letter for a visa application.

    Attributes
    ----------
    kind : LetterKind
    traveller_reference : str
        The traveller's ``reference`` (e.g. a database key).
    nationality : Country
    visa : Requirement
        Short-stay or long-stay visa.
    arrival_day, departure_day : datetime.date
        The stay of this traveller.
    duration_days : int
        Days of the stay, arrival and departure included.
    first_consultation_day, first_fraction_day, last_fraction_day : datetime.date
        The expected treatment.
    fractions : int
    quote_total_eur, amount_paid_eur : Decimal
        Proof of advance payment.
    last_payment_day : datetime.date
        Day of the payment that completed the advance payment.
    relationship, justification : str
        For an accompanying person.
    passport_number : str
        The traveller's own passport number ("" when not given), printed on their letter.
    medical_emergency : bool
        The physician confirmed the emergency.
    advice : ApplicationAdvice
        Where and when to apply.
    """

    kind: LetterKind
    traveller_reference: str
    nationality: Country
    visa: Requirement
    arrival_day: date
    departure_day: date
    duration_days: int
    first_consultation_day: date
    first_fraction_day: date
    last_fraction_day: date
    fractions: int
    quote_total_eur: Decimal
    amount_paid_eur: Decimal
    last_payment_day: date
    relationship: str
    justification: str
    medical_emergency: bool
    advice: ApplicationAdvice
    passport_number: str = ""


def consulate_letters(
    trip: TripAssessment,
    expected: ExpectedStay,
    quote_total_eur: Decimal,
    payments: Sequence[Payment],
    passports: Mapping[str, str] | None = None,
) -> tuple[ConsulateLetter, ...]:
    """Return the letters to write: one per traveller who needs a visa, patient first.

    Parameters
    ----------
    trip : TripAssessment
        From :func:`~protonpath.international.rules.visa.assess_trip`.
    expected : ExpectedStay
        The expected treatment dates.
    quote_total_eur : Decimal
        Total of the accepted quote.
    payments : sequence of Payment
        Payments and refunds recorded for the quote.
    passports : mapping of str to str, optional
        Passport number of each traveller by their ``reference`` (the patient's reference is
        the patient's own); a traveller not in it gets ``""``.

    Raises
    ------
    LetterNotReadyError
        If information is missing for a traveller, or the quote is not paid in full (the
        attestation carries the proof of advance payment).
    """
    missing = [
        f"{t.role.value} {t.reference or index}: {reason.code}"
        for index, t in enumerate(trip.travellers)
        for reason in t.missing_information
    ]
    if missing:
        raise LetterNotReadyError(f"Information missing: {'; '.join(missing)}.")
    balance = payment_balance(quote_total_eur, payments)
    if not balance.paid_in_full:
        raise LetterNotReadyError(
            f"The quote is not paid in full: {balance.balance_due_eur} EUR still due."
        )
    last_payment_day = max(p.paid_on for p in payments if p.kind is PaymentKind.PAYMENT)
    return tuple(
        _letter(
            t, trip, expected, balance.quote_total_eur, balance.net_paid_eur, last_payment_day,
            ((passports or {}).get(t.reference) or "").strip(),
        )
        for t in trip.travellers
        if t.needs_consulate_letter
    )


def _letter(
    traveller: TravellerAssessment,
    trip: TripAssessment,
    expected: ExpectedStay,
    total: Decimal,
    paid: Decimal,
    last_payment_day: date,
    passport_number: str = "",
) -> ConsulateLetter:
    assert traveller.application is not None  # a visa is needed, so there is advice
    kind = (
        LetterKind.PATIENT_ATTESTATION
        if traveller.role is Role.PATIENT
        else LetterKind.COMPANION_ATTESTATION
    )
    return ConsulateLetter(
        kind=kind,
        traveller_reference=traveller.reference,
        nationality=traveller.country,
        visa=traveller.requirement,
        arrival_day=traveller.stay.first_day,
        departure_day=traveller.stay.last_day,
        duration_days=traveller.stay.days,
        first_consultation_day=expected.first_consultation_day,
        first_fraction_day=expected.first_fraction_day,
        last_fraction_day=expected.last_fraction_day,
        fractions=len(expected.fraction_days),
        quote_total_eur=total,
        amount_paid_eur=paid,
        last_payment_day=last_payment_day,
        relationship=traveller.relationship,
        justification=traveller.justification,
        medical_emergency=trip.medical_emergency,
        advice=traveller.application,
        passport_number=passport_number,
    )
