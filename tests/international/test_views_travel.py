"""Visa assessment on the request page, accompanying persons, earlier stays, consulate letters."""

import datetime
import io

import pytest
from django.urls import reverse
from pypdf import PdfReader

from protonpath.accounts.models import AuditEvent
from protonpath.international import selectors, services
from protonpath.international.models import AccompanyingPerson, DeclaredStay, TravelPlan
from tests.factories import advance_to, make_request

pytestmark = pytest.mark.django_db

TODAY = datetime.date.today()


def detail(client, r):
    return client.get(reverse("referrals:detail", args=[r.pk])).content.decode()


def companion(r, actor, **data):
    base = {"first_name": "Fatima", "last_name": "El Idrissi", "nationality": "MA", "relationship": "mother"}
    base.update(data)
    return services.add_companion(actor=actor, treatment_request=r, data=base)


def test_the_request_page_shows_each_travellers_visa_regime(client, accepted, patient):
    companion(accepted, patient)
    companion(accepted, patient, first_name="John", last_name="Smith", nationality="US", relationship="", justification="Friend and carer.")
    companion(accepted, patient, first_name="Léa", last_name="Martin", nationality="BE", relationship="cousin")
    client.force_login(patient)
    page = detail(client, accepted)
    assert "Patient from abroad: quote, payment, visa" in page
    assert "Visa required (Annex I)" in page and "Short-stay visa (type C)" in page  # Morocco
    assert "Visa-exempt (Annex II)" in page  # United States
    assert "EU, EEA or Swiss citizen" in page and "No visa needed" in page  # Belgium
    assert "2 to 10 days" in page


def test_earlier_stays_count_in_the_90_days_of_any_180(client, accepted, patient):
    american = companion(accepted, patient, first_name="John", last_name="Smith", nationality="US", relationship="husband")
    stay = selectors.planned_stay(accepted).stay
    assert stay.days < 90
    client.force_login(patient)
    assert "Long-stay visa (type D)" not in detail(client, accepted)
    # 60 days in the Schengen area that ended a week ago: with a stay of more than 30 days, over the limit.
    services.add_declared_stay(
        actor=patient, treatment_request=accepted, companion=american, entry_on=TODAY - datetime.timedelta(days=66), exit_on=TODAY - datetime.timedelta(days=7)
    )
    assessment = selectors.visa_assessment(accepted)
    verdict = next(t for t in assessment.trip.companions if t.reference == str(american.pk))
    assert not verdict.window.compliant and verdict.requirement == "long_stay_visa"
    assert "Long-stay visa (type D)" in detail(client, accepted)


def test_a_treatment_longer_than_90_days_needs_a_long_stay_visa(accepted, patient):
    accepted.proposed_fractions = 60
    accepted.save()
    assessment = selectors.visa_assessment(accepted)
    assert assessment.expected.stay.days > 90
    assert assessment.trip.patient.requirement == "long_stay_visa"


def test_an_eu_patient_needs_no_visa(tariff, doctor, staff, oncologist):
    r = make_request(doctor)
    r.patient.nationality = "DE"
    r.patient.save()
    r = advance_to(r, "accepted", staff=staff, oncologist=oncologist)
    assert selectors.visa_assessment(r).trip.patient.requirement == "none"


def test_owner_adds_accompanying_persons_and_bad_input_is_refused(client, accepted, patient):
    client.force_login(patient)
    url = reverse("international:travellers", args=[accepted.pk])
    assert client.get(url).status_code == 200
    bad = client.post(url, {"companion-first_name": "A", "companion-last_name": "B", "companion-nationality": "ZZ", "companion-relationship": "son"})
    assert bad.status_code == 400 and "ISO 3166-1" in bad.content.decode()
    missing = client.post(url, {"companion-first_name": "A", "companion-last_name": "B", "companion-nationality": "MA"})
    assert missing.status_code == 400 and "justification" in missing.content.decode()
    assert not AccompanyingPerson.objects.exists()
    ok = client.post(url, {"companion-first_name": "Omar", "companion-last_name": "Alami", "companion-nationality": "ma", "companion-relationship_kind": "child"})
    assert ok.status_code == 302
    person = AccompanyingPerson.objects.get()
    assert person.nationality == "MA" and person.relationship_kind == "child" and person.relationship == ""
    assert AuditEvent.objects.filter(actor=patient, action="create", object_type="international.accompanyingperson").exists()


def test_owner_declares_earlier_stays(client, accepted, patient):
    client.force_login(patient)
    url = reverse("international:travellers", args=[accepted.pk])
    bad = client.post(url, {"stay-traveller": "", "stay-entry_on": "2026-05-10", "stay-exit_on": "2026-05-01"})
    assert bad.status_code == 400 and not DeclaredStay.objects.exists()
    entry, exit_ = TODAY - datetime.timedelta(days=40), TODAY - datetime.timedelta(days=30)
    client.post(url, {"stay-traveller": "", "stay-entry_on": entry.isoformat(), "stay-exit_on": exit_.isoformat()})
    stay = DeclaredStay.objects.get()
    assert stay.companion is None and stay.entry_on == entry
    client.post(reverse("international:stay_delete", args=[stay.pk]))
    assert not DeclaredStay.objects.exists()


def test_others_cannot_see_or_change_travellers(client, accepted, patient, users):
    person = companion(accepted, patient)
    for role in ("other_patient", "other_doctor", "physicist"):
        client.force_login(users[role])
        assert client.get(reverse("international:travellers", args=[accepted.pk])).status_code == 404
        assert client.post(reverse("international:companion_delete", args=[person.pk])).status_code == 404
        assert client.get(reverse("international:companion_letter", args=[person.pk])).status_code == 404
    assert AccompanyingPerson.objects.filter(pk=person.pk).exists()


def test_staff_set_the_travel_plan_and_the_emergency(client, accepted, staff, patient):
    client.force_login(staff)
    first = TODAY + datetime.timedelta(days=60)
    client.post(reverse("international:travellers", args=[accepted.pk]), {"plan-first_consultation_on": first.isoformat(), "plan-medical_emergency": "on"})
    plan = TravelPlan.objects.get(treatment_request=accepted)
    assert plan.medical_emergency and plan.first_consultation_on == first
    client.force_login(patient)
    assert "the consulate may speed up the procedure" in detail(client, accepted)
    # The owner cannot change the plan.
    response = client.post(reverse("international:travellers", args=[accepted.pk]), {"plan-first_consultation_on": first.isoformat()})
    assert response.status_code == 403


def test_letters_appear_once_paid_and_download_in_both_languages(client, accepted_quote, staff, patient):
    r = accepted_quote.treatment_request
    person = companion(r, patient)
    client.force_login(patient)
    assert client.get(reverse("international:attestation", args=[r.pk])).status_code == 302  # not paid yet
    services.record_payment(
        actor=staff, quote=accepted_quote, amount_eur=accepted_quote.total_eur, paid_on=TODAY, method="bank_transfer", reference="VIR-77"
    )
    page = detail(client, r)
    assert "Attestation for the patient" in page and "Letter for Fatima El Idrissi" in page
    for lang, words in (("en", "Attestation of treatment"), ("fr", "Attestation de traitement")):
        response = client.get(reverse("international:attestation", args=[r.pk]) + f"?lang={lang}")
        assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
        assert words in PdfReader(io.BytesIO(response.content)).pages[0].extract_text()
    letter = client.get(reverse("international:companion_letter", args=[person.pk]) + "?lang=fr")
    text = PdfReader(io.BytesIO(letter.content)).pages[0].extract_text()
    # The relationship in the letter's language ("mother" was printed as typed, issue 12, item 13).
    assert "Fatima El Idrissi" in text and "Lien avec le patient Parent" in " ".join(text.split())
    assert AuditEvent.objects.filter(actor=patient, action="download", treatment_request_id=r.pk).count() == 3


def test_the_panel_is_not_shown_for_insured_patients(client, tariff, doctor, staff, oncologist):
    r = advance_to(make_request(doctor, covered_by_french_insurance=True), "accepted", staff=staff, oncologist=oncologist)
    client.force_login(doctor)
    assert "Patient from abroad: quote, payment, visa" not in detail(client, r)
