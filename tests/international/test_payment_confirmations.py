"""Issue 12, item 6: payments.

An overpayment and a reused bank reference were accepted without a warning; after accepting a
quote the patient was told nothing about how to pay; "record payment in full" was a second step
staff missed. Now: such payments are held with a warning until staff confirm (both audited); the
department's bank details are editable data, shown to the patient after acceptance and printed
on the quote; the payments page says when the balance is zero and offers the step there.
"""

from __future__ import annotations

import datetime
import html
import io
import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation
from pypdf import PdfReader

from protonpath.accounts.models import AuditEvent
from protonpath.international import pdf, selectors, services
from protonpath.international.models import DepartmentDetails, Payment
from protonpath.international.rules.payment import Payment as PaymentRow
from protonpath.international.rules.payment import iban_is_valid, payment_warnings
from protonpath.referrals.models import State
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _back_to_the_default_language():
    """A page asked in French leaves French active in this thread: give the next test the default."""
    yield
    translation.activate(settings.LANGUAGE_CODE)

TODAY = datetime.date.today()
IBAN = "FR76 3000 6000 0112 3456 7890 189"
BANK = {
    "beneficiary": "Centre François Baclesse",
    "iban": IBAN,
    "bic": "AGRIFRPP",
    "bank_name": "Banque de test",
    "payment_note_en": "Transfer fees are paid by the sender.",
    "payment_note_fr": "Les frais de virement sont à la charge de l'émetteur.",
}


def pay(quote, staff, amount, reference="VIR-1", **kwargs):
    return services.record_payment(
        actor=staff, quote=quote, amount_eur=amount, paid_on=TODAY, method="bank_transfer", reference=reference, **kwargs
    )


def text_of(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " "))


@pytest.fixture
def bank(staff):
    return services.save_department_details(actor=staff, data=BANK)


# The rules ---------------------------------------------------------------------------------------


def test_the_rules_warn_of_an_overpayment_and_a_reused_reference_but_not_of_a_refund():
    first = PaymentRow("payment", Decimal("600"), TODAY, "bank_transfer", "VIR 2026-001")
    again = PaymentRow("payment", Decimal("500"), TODAY, "bank_transfer", "vir2026001")
    codes = [w.code for w in payment_warnings(Decimal("1000"), [first], again)]
    assert codes == ["overpayment", "reused_reference"]
    assert payment_warnings(Decimal("1000"), [first], again)[0].amount_eur == Decimal("100.00")
    fine = PaymentRow("payment", Decimal("400"), TODAY, "bank_transfer", "VIR-2")
    assert payment_warnings(Decimal("1000"), [first], fine) == ()
    assert [w.code for w in payment_warnings(Decimal("1000"), [first], fine, ["vir-2"])] == ["reused_reference"]
    refund = PaymentRow("refund", Decimal("100"), TODAY, "bank_transfer", "VIR 2026-001")
    assert payment_warnings(Decimal("1000"), [first], refund) == ()


def test_iban_check_digits():
    assert iban_is_valid(IBAN) and iban_is_valid("GB82WEST12345698765432")
    assert not iban_is_valid("FR76 3000 6000 0112 3456 7890 188")
    assert not iban_is_valid("not an iban")


# Overpayment and reused reference: held, confirmed, audited ----------------------------------------


def test_an_overpayment_is_held_until_staff_confirm_it_and_both_are_audited(accepted_quote, staff):
    total = accepted_quote.total_eur
    with pytest.raises(ValidationError) as held:
        pay(accepted_quote, staff, total + Decimal("500.00"))
    assert held.value.code == "confirm"
    assert "exceed the quote's total" in held.value.messages[0] and "€500.00" in held.value.messages[0]
    assert not Payment.objects.exists()
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.DENIED, object_type="international.quote", summary__contains="overpayment"
    ).exists()

    payment = pay(accepted_quote, staff, total + Decimal("500.00"), confirmed=True)
    assert selectors.quote_balance(accepted_quote).overpaid_eur == Decimal("500.00")
    event = AuditEvent.objects.get(action=AuditEvent.Action.CREATE, object_type="international.payment", object_id=str(payment.pk))
    assert "confirmed despite: overpayment" in event.summary


def test_a_reused_bank_reference_is_held_even_across_quotes(accepted_quote, staff):
    pay(accepted_quote, staff, "1000.00", reference="VIR-2026-0042")
    with pytest.raises(ValidationError) as held:
        pay(accepted_quote, staff, "1000.00", reference="vir 2026 0042")
    assert "already recorded" in held.value.messages[0] and accepted_quote.number in held.value.messages[0]
    assert Payment.objects.count() == 1
    pay(accepted_quote, staff, "1000.00", reference="vir 2026 0042", confirmed=True)
    assert Payment.objects.count() == 2


def test_a_refund_of_an_overpayment_needs_no_confirmation(accepted_quote, staff):
    pay(accepted_quote, staff, accepted_quote.total_eur + Decimal("10"), confirmed=True)
    services.record_payment(
        actor=staff, quote=accepted_quote, amount_eur="10", paid_on=TODAY, method="bank_transfer", reference="RB-1", kind="refund"
    )
    assert selectors.quote_balance(accepted_quote).paid_in_full


@pytest.mark.parametrize(
    ("language", "warning", "button"),
    [
        ("en", "exceed the quote's total", "I have checked: record it anyway"),
        ("fr", "dépasserait le total du devis", "J'ai vérifié : l'enregistrer quand même"),
    ],
)
def test_the_payments_page_warns_and_records_on_confirmation(client, accepted_quote, staff, language, warning, button):
    client.login(username=staff.username, password=PASSWORD)
    url = reverse("international:payments", args=[accepted_quote.pk])
    data = {
        "kind": "payment", "amount_eur": str(accepted_quote.total_eur + 1), "paid_on": TODAY.isoformat(),
        "method": "bank_transfer", "reference": "VIR-9",
    }
    headers = {"accept-language": language}
    response = client.post(url, data, headers=headers)
    page = html.unescape(response.content.decode()).replace("\u00a0", " ")
    assert response.status_code == 400 and warning in page and button in page
    assert not Payment.objects.exists()
    response = client.post(url, {**data, "confirm": "1"}, headers=headers, follow=True)
    assert Payment.objects.count() == 1


# Paid in full: said and offered in the same flow ------------------------------------------------


@pytest.mark.parametrize(
    ("language", "notice"),
    [("en", "The balance is zero: the quote is paid in full."), ("fr", "Le solde est nul : le devis est payé en totalité.")],
)
def test_the_payment_that_completes_the_balance_says_so_and_offers_the_step(client, accepted_quote, staff, language, notice):
    client.login(username=staff.username, password=PASSWORD)
    url = reverse("international:payments", args=[accepted_quote.pk])
    data = {
        "kind": "payment", "amount_eur": str(accepted_quote.total_eur), "paid_on": TODAY.isoformat(),
        "method": "bank_transfer", "reference": "VIR-10",
    }
    response = client.post(url, data, headers={"accept-language": language}, follow=True)
    page = html.unescape(response.content.decode()).replace("\u00a0", " ")
    assert notice in page and 'id="record-full-payment"' in page
    response = client.post(reverse("international:full_payment", args=[accepted_quote.treatment_request_id]), follow=True)
    accepted_quote.treatment_request.refresh_from_db()
    assert accepted_quote.treatment_request.state == State.PAID


# Payment instructions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "heading", "note"),
    [("en", "How to pay", BANK["payment_note_en"]), ("fr", "Comment payer", BANK["payment_note_fr"])],
)
def test_the_patient_sees_how_to_pay_after_accepting(client, sent_quote, patient, bank, language, heading, note):
    client.login(username=patient.username, password=PASSWORD)
    headers = {"accept-language": language}
    before = client.get(reverse("international:quote", args=[sent_quote.pk]), headers=headers).content.decode()
    assert heading not in before
    response = client.post(reverse("international:quote_accept", args=[sent_quote.pk]), headers=headers, follow=True)
    page = html.unescape(response.content.decode()).replace("\u00a0", " ")
    assert heading in page and IBAN in page and "AGRIFRPP" in page and note in page
    assert f"{sent_quote.number} {sent_quote.treatment_request.reference}" in page


@pytest.mark.parametrize(("language", "heading", "note"), [("en", "How to pay", "sender"), ("fr", "Comment payer", "émetteur")])
def test_the_quote_pdf_prints_the_payment_instructions(sent_quote, bank, language, heading, note):
    text = text_of(pdf.quote_pdf(sent_quote, language=language))
    assert heading in text and IBAN in text and "AGRIFRPP" in text and note in text
    assert f"{sent_quote.number} {sent_quote.treatment_request.reference}" in text


def test_department_details_are_edited_by_managers_only_and_audited(client, staff, oncologist):
    url = reverse("international:department_details")
    client.login(username=oncologist.username, password=PASSWORD)
    assert client.get(url).status_code == 403
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DENIED, object_type="international.departmentdetails").exists()
    client.login(username=staff.username, password=PASSWORD)
    response = client.post(url, {**BANK, "iban": "FR77 3000 6000 0112 3456 7890 189"})
    assert response.status_code == 400 and "not valid" in response.content.decode()
    response = client.post(url, {**BANK, "iban": IBAN.replace(" ", "").lower()})
    assert response.status_code == 302
    assert DepartmentDetails.current().iban == IBAN
    assert AuditEvent.objects.filter(action=AuditEvent.Action.UPDATE, object_type="international.departmentdetails").exists()


def test_the_api_holds_the_same_payments_until_confirmed(client, accepted_quote, staff):
    from protonpath.accounts.models import ApiToken

    _, raw = ApiToken.issue(user=staff, name="test")
    url = f"/api/international/quotes/{accepted_quote.pk}/payments"
    payment = {
        "amount_eur": str(accepted_quote.total_eur + 1), "paid_on": TODAY.isoformat(), "method": "bank_transfer", "reference": "VIR-11",
    }
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    held = client.post(url, payment, content_type="application/json", **headers)
    assert held.status_code == 400 and "exceed the quote's total" in str(held.json()["detail"])
    assert not Payment.objects.exists()
    done = client.post(url, {**payment, "confirmed": True}, content_type="application/json", **headers)
    assert done.status_code == 201 and Payment.objects.count() == 1
