"""The facts of the letters for the consulate."""

from datetime import date
from decimal import Decimal

import pytest

from protonpath.international.rules.letters import (
    LetterKind,
    LetterNotReadyError,
    consulate_letters,
)
from protonpath.international.rules.loaders import load_visa_regimes
from protonpath.international.rules.payment import Payment
from protonpath.international.rules.stay import expected_stay
from protonpath.international.rules.visa import Requirement, Role, Traveller, assess_trip

REGIMES = load_visa_regimes()
EXPECTED = expected_stay(date(2027, 1, 4), 30)
TOTAL = Decimal("45000.00")
PAID = [
    Payment("payment", "20000", date(2026, 11, 20), "bank_transfer", "TRX-1"),
    Payment("payment", "25000", date(2026, 12, 1), "bank_transfer", "TRX-2"),
]


def trip(*companions, emergency=False):
    return assess_trip(
        Traveller(Role.PATIENT, "DZ", reference="p"),
        list(companions),
        EXPECTED.stay,
        REGIMES,
        medical_emergency=emergency,
    )


def test_patient_attestation_carries_dates_duration_and_payment():
    (letter,) = consulate_letters(trip(emergency=True), EXPECTED, TOTAL, PAID)
    assert letter.kind is LetterKind.PATIENT_ATTESTATION
    assert letter.traveller_reference == "p"
    assert letter.nationality.name == "Algeria"
    assert letter.visa is Requirement.SHORT_STAY_VISA
    assert (letter.arrival_day, letter.departure_day) == (date(2027, 1, 3), date(2027, 2, 27))
    assert letter.duration_days == 56
    assert (letter.first_fraction_day, letter.last_fraction_day) == (
        date(2027, 1, 18),
        date(2027, 2, 26),
    )
    assert letter.fractions == 30
    assert letter.amount_paid_eur == TOTAL
    assert letter.last_payment_day == date(2026, 12, 1)
    assert letter.medical_emergency
    assert "emergency" in letter.advice.message


def test_one_letter_per_companion_who_needs_a_visa_with_relationship_or_justification():
    letters = consulate_letters(
        trip(
            Traveller(Role.COMPANION, "DZ", relationship="mother", reference="c1"),
            Traveller(Role.COMPANION, "FR", relationship="brother", reference="c2"),
            Traveller(
                Role.COMPANION, "MA", justification="Family friend and carer", reference="c3"
            ),
        ),
        EXPECTED,
        TOTAL,
        PAID,
    )
    assert [(letter.kind, letter.traveller_reference) for letter in letters] == [
        (LetterKind.PATIENT_ATTESTATION, "p"),
        (LetterKind.COMPANION_ATTESTATION, "c1"),
        (LetterKind.COMPANION_ATTESTATION, "c3"),
    ]
    assert letters[1].relationship == "mother"
    assert letters[2].justification == "Family friend and carer"


def test_no_letter_before_full_payment():
    with pytest.raises(LetterNotReadyError, match="25000.00 EUR still due"):
        consulate_letters(trip(), EXPECTED, TOTAL, PAID[:1])
    refunded = [*PAID, Payment("refund", "100", date(2026, 12, 2), "bank_transfer", "RF-1")]
    with pytest.raises(LetterNotReadyError, match="not paid in full"):
        consulate_letters(trip(), EXPECTED, TOTAL, refunded)


def test_no_letter_while_a_companion_lacks_relationship_and_justification():
    with pytest.raises(
        LetterNotReadyError, match="companion c1: relationship_or_justification_missing"
    ):
        consulate_letters(
            trip(Traveller(Role.COMPANION, "DZ", reference="c1")), EXPECTED, TOTAL, PAID
        )


def test_no_letter_for_travellers_without_visa():
    assessed = assess_trip(Traveller(Role.PATIENT, "US"), [], EXPECTED.stay, REGIMES)
    assert consulate_letters(assessed, EXPECTED, TOTAL, PAID) == ()
