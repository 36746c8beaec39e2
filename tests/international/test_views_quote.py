"""Pages: staff build and send quotes, record payments; the patient answers online; others see nothing."""

import datetime
import io

import pytest
from django.urls import reverse
from pypdf import PdfReader

from protonpath.accounts.models import AuditEvent
from protonpath.international import services
from protonpath.international.models import Payment, Quote, QuoteStatus, Tariff
from protonpath.referrals.models import State

pytestmark = pytest.mark.django_db


def test_staff_build_then_send_a_quote_from_the_pages(client, accepted, staff):
    client.force_login(staff)
    page = client.get(reverse("referrals:detail", args=[accepted.pk]))
    assert b"Build the quote" in page.content
    form = client.get(reverse("international:quote_new", args=[accepted.pk]))
    assert form.status_code == 200 and b"Planned first consultation" in form.content
    first_day = (datetime.date.today() + datetime.timedelta(days=40)).isoformat()
    response = client.post(
        reverse("international:quote_new", args=[accepted.pk]),
        {
            "consultations": 7,
            "first_consultation_on": first_day,
            "companions": 1,
            "imaging_ct_planning": 1,
            "imaging_mri": 0,
            "imaging_pet_ct": 1,
        },
    )
    quote = Quote.objects.get(treatment_request=accepted)
    assert response.status_code == 302 and response["Location"] == reverse("international:quote", args=[quote.pk])
    lines = {line.code: line.quantity for line in quote.lines.all()}
    assert lines["consultation_oncologist"] == 7 and lines["imaging_pet_ct"] == 1 and "imaging_mri" not in lines
    assert quote.companions == 1
    client.post(reverse("international:quote_send", args=[quote.pk]))
    quote.refresh_from_db()
    accepted.refresh_from_db()
    assert quote.status == QuoteStatus.SENT and accepted.state == State.QUOTE_SENT


def test_bad_builder_input_is_refused_and_nothing_is_built(client, accepted, staff):
    client.force_login(staff)
    response = client.post(
        reverse("international:quote_new", args=[accepted.pk]),
        {"consultations": -1, "first_consultation_on": "not a date", "companions": 0},
    )
    assert response.status_code == 200 and b"errorlist" in response.content
    assert not Quote.objects.exists()


def test_the_patient_sees_the_sent_quote_and_accepts_it(client, sent_quote, patient):
    client.force_login(patient)
    page = client.get(reverse("international:quote", args=[sent_quote.pk]))
    assert page.status_code == 200
    assert b"Accept the quote" in page.content and b"Refuse the quote" in page.content
    assert AuditEvent.objects.filter(actor=patient, action="view", object_type="international.quote").exists()
    client.post(reverse("international:quote_accept", args=[sent_quote.pk]))
    sent_quote.refresh_from_db()
    assert sent_quote.status == QuoteStatus.ACCEPTED
    assert sent_quote.treatment_request.__class__.objects.get(pk=sent_quote.treatment_request_id).state == State.QUOTE_ACCEPTED


def test_the_patient_refuses_with_a_reason(client, sent_quote, patient):
    client.force_login(patient)
    client.post(reverse("international:quote_refuse", args=[sent_quote.pk]), {"reason": ""})
    sent_quote.refresh_from_db()
    assert sent_quote.status == QuoteStatus.SENT  # no reason, nothing changes
    client.post(reverse("international:quote_refuse", args=[sent_quote.pk]), {"reason": "We found a centre nearer home."})
    sent_quote.refresh_from_db()
    assert sent_quote.status == QuoteStatus.REFUSED


def test_the_patient_never_sees_a_draft(client, accepted, staff, patient):
    draft = services.build_quote(actor=staff, treatment_request=accepted)
    client.force_login(patient)
    assert client.get(reverse("international:quote", args=[draft.pk])).status_code == 404
    assert client.get(reverse("international:quote_pdf", args=[draft.pk])).status_code == 404


@pytest.mark.parametrize("role", ["other_patient", "other_doctor"])
def test_other_patients_and_doctors_get_404_everywhere(client, sent_quote, users, role):
    client.force_login(users[role])
    r = sent_quote.treatment_request
    for url in [
        reverse("international:quote", args=[sent_quote.pk]),
        reverse("international:quote_pdf", args=[sent_quote.pk]),
        reverse("international:payments", args=[sent_quote.pk]),
        reverse("international:travellers", args=[r.pk]),
        reverse("international:attestation", args=[r.pk]),
        reverse("international:quote_new", args=[r.pk]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("international:quote_accept", args=[sent_quote.pk])).status_code == 404
    sent_quote.refresh_from_db()
    assert sent_quote.status == QuoteStatus.SENT
    assert AuditEvent.objects.filter(actor=users[role], action="denied").exists()


def test_physicists_do_not_see_quotes_before_the_first_consultation(client, sent_quote, physicist):
    client.force_login(physicist)
    assert client.get(reverse("international:quote", args=[sent_quote.pk])).status_code == 404


def test_oncologists_see_quotes_but_do_not_manage_them(client, sent_quote, oncologist):
    client.force_login(oncologist)
    assert client.get(reverse("international:quote", args=[sent_quote.pk])).status_code == 200
    assert client.get(reverse("international:payments", args=[sent_quote.pk])).status_code == 403
    assert client.get(reverse("international:quote_new", args=[sent_quote.treatment_request_id])).status_code == 403


def test_the_owner_may_not_build_quotes_nor_record_payments(client, accepted_quote, patient):
    client.force_login(patient)
    assert client.get(reverse("international:quote_new", args=[accepted_quote.treatment_request_id])).status_code == 403
    response = client.post(
        reverse("international:payments", args=[accepted_quote.pk]),
        {"kind": "payment", "amount_eur": "100", "paid_on": "2026-01-02", "method": "card", "reference": "X"},
    )
    assert response.status_code == 403 and not Payment.objects.exists()


def test_staff_record_payments_then_full_payment(client, accepted_quote, staff):
    client.force_login(staff)
    url = reverse("international:payments", args=[accepted_quote.pk])
    today = datetime.date.today().isoformat()
    client.post(url, {"kind": "payment", "amount_eur": "1000.00", "paid_on": today, "method": "bank_transfer", "reference": "VIR-1"})
    page = client.get(url)
    assert b"VIR-1" in page.content and b"Record payment in full" not in page.content
    full = reverse("international:full_payment", args=[accepted_quote.treatment_request_id])
    client.post(full)
    r = accepted_quote.treatment_request
    r.refresh_from_db()
    assert r.state == State.QUOTE_ACCEPTED
    rest = accepted_quote.total_eur - 1000
    client.post(url, {"kind": "payment", "amount_eur": str(rest), "paid_on": today, "method": "card", "reference": "CB-2"})
    assert b"Record payment in full" in client.get(url).content
    client.post(full)
    r.refresh_from_db()
    assert r.state == State.PAID


def test_a_bad_payment_shows_the_error_and_records_nothing(client, accepted_quote, staff):
    client.force_login(staff)
    url = reverse("international:payments", args=[accepted_quote.pk])
    response = client.post(url, {"kind": "refund", "amount_eur": "50", "paid_on": datetime.date.today().isoformat(), "method": "card", "reference": "R"})
    assert response.status_code == 400 and "exceed" in response.content.decode()
    assert not Payment.objects.exists()


@pytest.mark.parametrize(("lang", "expected"), [("en", "Quote"), ("fr", "Devis")])
def test_quote_pdf_download_in_the_asked_language(client, sent_quote, patient, lang, expected):
    client.force_login(patient)
    response = client.get(reverse("international:quote_pdf", args=[sent_quote.pk]) + f"?lang={lang}")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = PdfReader(io.BytesIO(response.content)).pages[0].extract_text()
    assert f"{expected} {sent_quote.number}" in text
    assert AuditEvent.objects.filter(actor=patient, action="download", object_type="international.quote").exists()


def test_quote_pdf_follows_the_users_language(client, sent_quote, patient):
    patient.preferred_language = "fr"
    patient.save()
    client.force_login(patient)
    response = client.get(reverse("international:quote_pdf", args=[sent_quote.pk]))
    assert "Devis" in PdfReader(io.BytesIO(response.content)).pages[0].extract_text()


def test_tariff_page_adds_a_new_price_without_touching_the_old(client, tariff, staff, oncologist):
    client.force_login(staff)
    assert client.get(reverse("international:tariffs")).status_code == 200
    client.post(
        reverse("international:tariffs"),
        {
            "code": "proton_fraction",
            "label_en": "Proton therapy session",
            "label_fr": "Séance de protonthérapie",
            "unit_en": "fraction",
            "unit_fr": "fraction",
            "unit_price_eur": "1300.00",
            "valid_from": "2026-06-01",
        },
    )
    prices = list(Tariff.objects.filter(code="proton_fraction").order_by("valid_from").values_list("unit_price_eur", flat=True))
    assert [str(p) for p in prices] == ["1250.00", "1300.00"]
    client.force_login(oncologist)
    response = client.post(reverse("international:tariffs"), {"code": "proton_fraction"})
    assert response.status_code == 403


def test_patients_do_not_see_the_tariff_page(client, patient):
    client.force_login(patient)
    assert client.get(reverse("international:tariffs")).status_code == 403


def test_the_quote_page_in_french_with_french_money(client, sent_quote, patient):
    client.force_login(patient)
    page = client.get(reverse("international:quote", args=[sent_quote.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Accepter le devis" in page and "Frais supplémentaires à prévoir" in page
    assert "37\u00a0500,00\u00a0€" in page
    assert "Séance de protonthérapie (fraction)" in page


def test_a_cancelled_request_offers_no_answer_to_its_quote(client, sent_quote, patient):
    from protonpath.referrals import services as referral_services

    referral_services.cancel(actor=patient, treatment_request=sent_quote.treatment_request, reason="Treated elsewhere.")
    client.force_login(patient)
    page = client.get(reverse("international:quote", args=[sent_quote.pk])).content.decode()
    assert 'id="accept-quote"' not in page
    detail = client.get(reverse("referrals:detail", args=[sent_quote.treatment_request_id])).content.decode()
    assert 'id="open-quote"' not in detail
    client.post(reverse("international:quote_accept", args=[sent_quote.pk]))
    sent_quote.refresh_from_db()
    assert sent_quote.status == QuoteStatus.SENT
