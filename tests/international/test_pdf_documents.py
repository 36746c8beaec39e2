"""The quote and the consulate letters as PDFs: text extracted with pypdf, in English and French."""

import datetime
import io
import re

import pytest
from django.core.exceptions import ValidationError
from pypdf import PdfReader

from protonpath.international import pdf, services
from protonpath.international.formatting import format_eur

pytestmark = pytest.mark.django_db


def text_of(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    # Non-breaking spaces (French money) read as plain spaces; lines joined.
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " "))


def paid(accepted_quote, staff):
    services.record_payment(
        actor=staff,
        quote=accepted_quote,
        amount_eur=accepted_quote.total_eur,
        paid_on=datetime.date.today(),
        method="bank_transfer",
        reference="VIR-2026-0042",
    )
    return accepted_quote


def test_money_is_formatted_per_language():
    assert format_eur("12345", "fr") == "12\u00a0345,00\u00a0€"
    assert format_eur("12345", "en") == "€12,345.00"
    assert format_eur("0.5", "fr-fr") == "0,50\u00a0€"
    assert format_eur("1234567.891", "en") == "€1,234,567.89"


def test_quote_pdf_in_english_lists_lines_total_and_additional_costs(sent_quote):
    text = text_of(pdf.quote_pdf(sent_quote, language="en"))
    assert f"Quote {sent_quote.number}" in text
    assert "Amina El Idrissi".upper().split()[-1] in text.upper()
    assert "Proton therapy session (fraction)" in text
    assert "€1,250.00" in text and "€37,500.00" in text
    assert format_eur(sent_quote.total_eur, "en") in text
    assert "Additional costs to plan for" in text
    assert format_eur(sent_quote.estimated_costs_eur, "en") in text
    assert "Morocco" in text
    assert "Illustrative prices" in text  # the shipped tariff is an example


def test_quote_pdf_in_french(sent_quote):
    text = text_of(pdf.quote_pdf(sent_quote, language="fr"))
    assert f"Devis {sent_quote.number}" in text
    assert "Séance de protonthérapie (fraction)" in text
    assert "1 250,00 €" in text and "37 500,00 €" in text
    assert format_eur(sent_quote.total_eur, "fr").replace("\u00a0", " ") in text
    assert "Frais supplémentaires à prévoir" in text
    assert "Maroc" in text
    assert "Proton therapy session" not in text


def test_attestation_needs_full_payment(accepted_quote):
    with pytest.raises(ValidationError) as excinfo:
        pdf.attestation_pdf(accepted_quote.treatment_request, language="en")
    assert "paid in full" in str(excinfo.value)


def test_patient_attestation_gives_dates_duration_and_proof_of_payment(accepted_quote, staff):
    quote = paid(accepted_quote, staff)
    r = quote.treatment_request
    text = text_of(pdf.attestation_pdf(r, language="en"))
    assert "Attestation of treatment and advance payment" in text
    assert "Amina El Idrissi" in text and "Morocco" in text
    assert f"{quote.stay_days} days" in text
    assert quote.first_fraction_on.strftime("%-d %B %Y") in text
    assert quote.last_fraction_on.strftime("%-d %B %Y") in text
    assert "VIR-2026-0042" in text
    assert format_eur(quote.total_eur, "en") in text
    assert "Short-stay visa" in text  # a Moroccan national, 30 fractions: under 90 days
    assert "2 to 10 days" in text


def test_patient_attestation_in_french(accepted_quote, staff):
    quote = paid(accepted_quote, staff)
    text = text_of(pdf.attestation_pdf(quote.treatment_request, language="fr"))
    assert "Attestation de traitement et de paiement anticipé" in text
    assert "Maroc" in text
    assert f"{quote.stay_days} jours" in text
    assert format_eur(quote.total_eur, "fr").replace("\u00a0", " ") in text
    assert "VIR-2026-0042" in text
    assert "2 à 10 jours" in text


def test_one_letter_per_accompanying_person_with_relationship_or_justification(accepted_quote, staff, patient):
    r = accepted_quote.treatment_request
    mother = services.add_companion(
        actor=patient, treatment_request=r, data={"first_name": "Fatima", "last_name": "El Idrissi", "nationality": "MA", "relationship": "mother"}
    )
    friend = services.add_companion(
        actor=patient,
        treatment_request=r,
        data={"first_name": "Karim", "last_name": "Tazi", "nationality": "DZ", "justification": "Close friend who drives the patient every day."},
    )
    paid(accepted_quote, staff)
    mother_text = text_of(pdf.companion_letter_pdf(mother, language="en"))
    assert "Fatima El Idrissi" in mother_text and "Relationship to the patient Parent" in mother_text and "Amina El Idrissi" in mother_text
    friend_text = text_of(pdf.companion_letter_pdf(friend, language="fr"))
    assert "Karim Tazi" in friend_text and "Algérie" in friend_text
    assert "Close friend who drives the patient every day." in friend_text
    assert "Justification" in friend_text


def test_an_eu_companion_needs_no_consulate_letter(accepted_quote, staff, patient):
    r = accepted_quote.treatment_request
    cousin = services.add_companion(
        actor=patient, treatment_request=r, data={"first_name": "Léa", "last_name": "Martin", "nationality": "BE", "relationship": "cousin"}
    )
    paid(accepted_quote, staff)
    with pytest.raises(ValidationError) as excinfo:
        pdf.companion_letter_pdf(cousin, language="en")
    assert "no visa" in str(excinfo.value)


def test_choose_language():
    class U:
        preferred_language = "fr"

    assert pdf.choose_language("en", U()) == "en"
    assert pdf.choose_language(None, U()) == "fr"
    assert pdf.choose_language("de", None) == "en"
