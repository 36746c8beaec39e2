"""Issue 12, items 5 and 6 in a real browser: a child from Algeria with one parent.

Staff enter the department's details; the parent (account holder) accepts the quote and is shown
how to pay; staff record an overpayment (held with a warning, then confirmed), the refund, and
the payment in full offered on the same page; the parent adds themself as the accompanying legal
guardian with a passport and downloads the consulate letters, in English and French. The letters
are saved with PNG renderings of their pages under test-artifacts/screenshots/.
"""

from __future__ import annotations

import datetime
import io
import shutil
import subprocess
from decimal import Decimal

import pytest
from pypdf import PdfReader

from protonpath.international import services
from protonpath.international.models import Payment
from protonpath.referrals.models import State, TreatmentRequest
from tests.browser.conftest import ARTIFACTS, login
from tests.factories import PASSWORD, advance_to, make_request

pytestmark = pytest.mark.django_db(transaction=True)


def save_pdf(data: bytes, name: str) -> str:
    """Keep the PDF and, where poppler is installed, its pages as PNG (to look at)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.pdf"
    path.write_bytes(data)
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "60", str(path), str(ARTIFACTS / name)], check=True)
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).replace("\u00a0", " ")


def test_a_parent_pays_and_downloads_the_consulate_letters(page, screenshot, patient, staff, oncologist):
    services.load_illustrative_tariff(valid_from=datetime.date(2026, 1, 1))
    r = advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)
    child = r.patient
    child.first_name, child.nationality = "Yanis", "DZ"
    child.birth_date = datetime.date.today().replace(year=datetime.date.today().year - 9) - datetime.timedelta(days=10)
    child.save()
    quote = services.send_quote(actor=staff, quote=services.build_quote(actor=staff, treatment_request=r))

    # Staff enter the department's details once.
    login(page, staff.username, PASSWORD)
    page.goto("/international/tariffs/")
    page.click("#department-details-link")
    page.fill("#id_address", "Centre de protonthérapie, site CYCLHAD\nCaen, France")
    page.fill("#id_phone", "+33 2 31 24 34 48")
    page.fill("#id_email", "gestion-patients@example.org")
    page.fill("#id_signatory_name", "Claire Durand")
    page.fill("#id_signatory_title_en", "Head of patient administration")
    page.fill("#id_signatory_title_fr", "Responsable de la gestion des patients")
    page.fill("#id_beneficiary", "Centre François Baclesse")
    page.fill("#id_iban", "FR7630006000011234567890189")
    page.fill("#id_bic", "AGRIFRPP")
    page.fill("#id_payment_note_en", "Transfer fees are paid by the sender.")
    page.fill("#id_payment_note_fr", "Les frais de virement sont à la charge de l'émetteur.")
    page.click("#department-details button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "Changes saved" in page.inner_text(".messages")
    screenshot("staff-department-details")
    page.click("header form button[type=submit]")
    page.wait_for_load_state("networkidle")

    # The parent accepts the quote and is told how to pay.
    login(page, patient.username, PASSWORD)
    page.goto(f"/international/quotes/{quote.pk}/")
    page.click("#accept-quote")
    page.wait_for_load_state("networkidle")
    instructions = page.inner_text("#payment-instructions")
    assert "FR76 3000 6000 0112 3456 7890 189" in instructions and f"{quote.number} {r.reference}" in instructions
    screenshot("parent-sees-how-to-pay")
    page.click("header form button[type=submit]")
    page.wait_for_load_state("networkidle")

    # Staff record an overpayment: held with a warning, recorded once confirmed; then the refund.
    login(page, staff.username, PASSWORD)
    page.goto(f"/international/quotes/{quote.pk}/payments/")
    form = page.locator("#payment-form")
    form.locator("#id_amount_eur").fill(str(quote.total_eur + Decimal("500")))
    form.locator("#id_method").select_option("bank_transfer")
    form.locator("#id_reference").fill("VIR-2026-0042")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#payment-warnings")
    assert "exceed the quote's total" in page.inner_text("#payment-warnings")
    assert not Payment.objects.exists()
    screenshot("staff-overpayment-warning")
    page.click("#confirm-payment")
    page.wait_for_load_state("networkidle")
    form = page.locator("#payment-form")
    form.locator("#id_kind").select_option("refund")
    form.locator("#id_amount_eur").fill("500")
    form.locator("#id_method").select_option("bank_transfer")
    form.locator("#id_reference").fill("RB-1")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    # The balance is zero: said, and the step is offered right here.
    assert "paid in full" in page.inner_text("#paid-in-full")
    screenshot("staff-balance-zero")
    page.click("#record-full-payment")
    page.wait_for_load_state("networkidle")
    assert TreatmentRequest.objects.get(pk=r.pk).state == State.PAID
    page.click("header form button[type=submit]")
    page.wait_for_load_state("networkidle")

    # The parent adds themself as the accompanying legal guardian, then downloads the letters.
    login(page, patient.username, PASSWORD)
    page.goto(f"/international/requests/{r.pk}/travellers/")
    # The patient's own passport number, given late (the request form is closed by now).
    page.fill("#id_patient-passport_number", "DZ7654321")
    page.click("form:has(#id_patient-passport_number) button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "DZ7654321" in page.inner_text("#patient-passport")
    page.fill("#id_companion-first_name", "Fatima")
    page.fill("#id_companion-last_name", "Benali")
    page.locator("#id_companion-nationality").evaluate("(el, v) => { el.value = v }", "DZ")
    page.fill("#id_companion-passport_number", "DZ1234567")
    page.select_option("#id_companion-relationship_kind", "parent")
    page.check("#id_companion-legal_guardian")
    page.click("form:has(#id_companion-first_name) button[type=submit]")
    page.wait_for_load_state("networkidle")
    screenshot("parent-adds-the-guardian")
    assert "parent or legal guardian" in page.inner_text("#companions")
    page.goto(f"/requests/{r.pk}/")
    page.wait_for_selector("#international")
    screenshot("parent-letters-offered")
    links = page.locator("#international a[href*='lang=en']")
    texts = {}
    for index in range(links.count()):
        url = links.nth(index).get_attribute("href")
        for language in ("en", "fr"):
            response = page.request.get(url.replace("lang=en", f"lang={language}"))
            assert response.status == 200 and response.headers["content-type"] == "application/pdf"
            texts[(index, language)] = save_pdf(response.body(), f"consulate-letter-{index}-{language}")
    attestation_en = texts[(0, "en")]
    assert "Passport number DZ7654321" in attestation_en and "Numéro de passeport DZ7654321" in texts[(0, "fr")]
    assert "The patient is a minor" in attestation_en and "Fatima Benali" in attestation_en and "DZ1234567" in attestation_en
    assert "Claire Durand" in attestation_en and "+33 2 31 24 34 48" in attestation_en
    assert "Refund" in attestation_en and "RB-1" in attestation_en
    assert "Le patient est mineur" in texts[(0, "fr")]
    companion_en = texts[(1, "en")]
    assert "Fatima Benali is the parent or legal guardian of the patient" in companion_en and "DZ1234567" in companion_en
    page.reload()
    page.click("#issued-letters summary")
    screenshot("parent-letters-issued")
