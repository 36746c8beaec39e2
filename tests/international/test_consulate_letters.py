"""Issue 12, item 5: the consulate letters.

Found: passport numbers entered but not printed; no signatory's name nor department contact; for a
minor, nothing said the companion is the parent or legal guardian; dates that ignored the booked
sessions and letters never re-issued when they moved; in the English letter, a label that wraps
pushed the values of the next rows out of line; the patient's letter listed the payments without
the refund and contradicted its own total. Each is asserted on the PDF's text (pypdf), in English
and French; the layout by the position of the words on the page.
"""

from __future__ import annotations

import datetime
import io
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import translation
from pypdf import PdfReader

from protonpath.accounts.models import AuditEvent
from protonpath.international import issuing, pdf, services
from protonpath.international.formatting import format_eur
from protonpath.international.models import IssuedLetter
from protonpath.scheduling.models import GantrySession, TreatmentCourse

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _back_to_the_default_language():
    """A page asked in French leaves French active in this thread: give the next test the default."""
    yield
    translation.activate(settings.LANGUAGE_CODE)

TODAY = datetime.date.today()
PARIS = ZoneInfo("Europe/Paris")
DETAILS = {
    "address": "Centre de protonthérapie, site CYCLHAD\nCaen, France",
    "phone": "+33 2 31 24 34 48",
    "email": "gestion-patients@example.org",
    "signatory_name": "Claire Durand",
    "signatory_title_en": "Head of patient administration",
    "signatory_title_fr": "Responsable de la gestion des patients",
}


def text_of(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " "))


def words_at(data: bytes) -> list[tuple[str, float]]:
    """Each text run of the first page with its baseline height on the page."""
    runs: list[tuple[str, float]] = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            runs.append((text.strip(), round(cm[5] + tm[5] * cm[3], 1) if cm[3] else round(tm[5], 1)))

    PdfReader(io.BytesIO(data)).pages[0].extract_text(visitor_text=visit)
    return runs


def y_of(runs, start: str) -> float:
    return next(y for text, y in runs if text.startswith(start))


def companion(r, actor, **data):
    base = {"first_name": "Fatima", "last_name": "El Idrissi", "nationality": "DZ", "relationship": "mother", "passport_number": "DZ1234567"}
    base.update(data)
    return services.add_companion(actor=actor, treatment_request=r, data=base)


def pay_in_full(quote, staff, extra=Decimal("0")):
    services.record_payment(
        actor=staff, quote=quote, amount_eur=quote.total_eur + extra, paid_on=TODAY, method="bank_transfer",
        reference="VIR-2026-0042", confirmed=True,
    )


@pytest.fixture
def details(staff):
    return services.save_department_details(actor=staff, data=DETAILS)


@pytest.fixture
def paid(accepted_quote, staff, details):
    pay_in_full(accepted_quote, staff)
    return accepted_quote


def book_sessions(r, staff, first_day: datetime.date, count: int) -> TreatmentCourse:
    course = TreatmentCourse.objects.create(
        treatment_request=r, fractions=count, category="adult_standard", session_minutes=20, first_session_extra_minutes=10,
        ready_date=first_day, due_date=first_day + datetime.timedelta(days=30), created_by=staff,
    )
    day, number = first_day, 0
    while number < count:
        if day.weekday() < 5:
            number += 1
            start = datetime.datetime.combine(day, datetime.time(9, 0), PARIS)
            GantrySession.objects.create(course=course, fraction_number=number, start=start, end=start + datetime.timedelta(minutes=20))
        day += datetime.timedelta(days=1)
    return course


def next_monday(after: datetime.date) -> datetime.date:
    return after + datetime.timedelta(days=7 - after.weekday())


# Passports, signatory, contact ------------------------------------------------------------------


@pytest.mark.parametrize(("language", "passport_label", "signing"), [("en", "Passport number", "For the department,"), ("fr", "Numéro de passeport", "Pour le service,")])
def test_the_companion_letter_prints_the_passport_the_signatory_and_the_contact(paid, patient, language, passport_label, signing):
    person = companion(paid.treatment_request, patient)
    text = text_of(pdf.companion_letter_pdf(person, language=language))
    assert f"{passport_label} DZ1234567" in text
    assert signing in text and "Claire Durand" in text
    assert DETAILS[f"signatory_title_{language}"] in text
    assert "+33 2 31 24 34 48" in text and "gestion-patients@example.org" in text and "site CYCLHAD" in text


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_patient_attestation_prints_the_signatory_and_the_contact(paid, language):
    text = text_of(pdf.attestation_pdf(paid.treatment_request, language=language))
    assert "Claire Durand" in text and DETAILS[f"signatory_title_{language}"] in text
    assert "+33 2 31 24 34 48" in text and "gestion-patients@example.org" in text


# A minor -----------------------------------------------------------------------------------------


@pytest.fixture
def child(paid):
    patient = paid.treatment_request.patient
    patient.birth_date = TODAY.replace(year=TODAY.year - 9) - datetime.timedelta(days=3)
    patient.save()
    return paid.treatment_request


def test_a_minor_letters_wait_for_the_parent_or_legal_guardian(child, patient):
    companion(child, patient, relationship="aunt", passport_number="DZ7654321")
    with pytest.raises(ValidationError) as refused:
        pdf.letters_for(child)
    assert refused.value.code == "guardian"


@pytest.mark.parametrize(
    ("language", "patient_says", "companion_says"),
    [
        ("en", "The patient is a minor (9 years old) and travels with their parent or legal guardian",
         "Fatima El Idrissi is the parent or legal guardian of the patient, who is a minor (9 years old)."),
        ("fr", "Le patient est mineur (9 ans) et voyage avec son parent ou représentant légal",
         "Fatima El Idrissi est le parent ou le représentant légal du patient, qui est mineur (9 ans)."),
    ],
)
def test_a_minor_letters_say_the_companion_is_the_parent_or_legal_guardian(child, patient, language, patient_says, companion_says):
    person = companion(child, patient, legal_guardian=True)
    attestation = text_of(pdf.attestation_pdf(child, language=language))
    assert patient_says in attestation
    assert "Fatima El Idrissi" in attestation and "DZ1234567" in attestation
    assert companion_says in text_of(pdf.companion_letter_pdf(person, language=language))


# Dates from the booked sessions, new versions when they move -------------------------------------


def test_the_letter_dates_are_the_booked_sessions_and_a_move_issues_a_new_version(paid, patient, staff):
    r = paid.treatment_request
    first = next_monday(TODAY + datetime.timedelta(days=40))
    v1 = issuing.issue_letter(actor=patient, treatment_request=r, language="en")
    assert v1.version == 1 and "Expected dates" in text_of(bytes(v1.pdf))
    assert issuing.issue_letter(actor=patient, treatment_request=r, language="en").pk == v1.pk  # nothing changed

    course = book_sessions(r, staff, first, 30)
    v2 = issuing.issue_letter(actor=patient, treatment_request=r, language="en")
    last = timezone_day(course.sessions.order_by("-start").first().start)
    text = text_of(bytes(v2.pdf))
    assert v2.version == 2
    assert f"30 sessions, from {first.day} {first:%B} {first.year} to {last.day} {last:%B} {last.year}" in text
    assert "The sessions are booked" in text and "It replaces version 1" in text

    # The sessions move by a week: version 3, with the new dates; the earlier versions stay.
    for session in course.sessions.order_by("-start"):
        session.start += datetime.timedelta(days=7)
        session.end += datetime.timedelta(days=7)
        session.save()
    v3 = issuing.issue_letter(actor=patient, treatment_request=r, language="fr")
    moved = first + datetime.timedelta(days=7)
    assert v3.version == 3
    assert f"du {moved.day}" in text_of(bytes(v3.pdf)) and "Elle remplace la version 2" in text_of(bytes(v3.pdf))
    assert IssuedLetter.objects.filter(treatment_request=r).count() == 3
    assert f"from {first.day} {first:%B}" in text_of(bytes(IssuedLetter.objects.get(pk=v2.pk).pdf))
    assert AuditEvent.objects.filter(action=AuditEvent.Action.CREATE, object_type="international.issuedletter").count() == 3


def timezone_day(moment: datetime.datetime) -> datetime.date:
    return moment.astimezone(PARIS).date()


def test_earlier_versions_download_for_who_sees_the_request_only(client, paid, patient, other_patient, staff):
    r = paid.treatment_request
    v1 = issuing.issue_letter(actor=patient, treatment_request=r, language="en")
    book_sessions(r, staff, next_monday(TODAY + datetime.timedelta(days=40)), 30)
    client.force_login(patient)
    response = client.get(reverse("international:attestation", args=[r.pk]) + "?lang=en")
    assert response.status_code == 200 and "-v2-en-" in response["Content-Disposition"]
    page = client.get(reverse("referrals:detail", args=[r.pk])).content.decode()
    assert reverse("international:issued_letter", args=[v1.pk]) in page
    old = client.get(reverse("international:issued_letter", args=[v1.pk]))
    assert old.status_code == 200 and old.content == bytes(v1.pdf)
    client.force_login(other_patient)
    assert client.get(reverse("international:issued_letter", args=[v1.pk])).status_code == 404
    assert AuditEvent.objects.filter(actor=other_patient, action=AuditEvent.Action.DENIED).exists()


# The layout: labels and values on the same line, even when a label wraps -------------------------


@pytest.mark.parametrize("language", ["en", "fr"])
def test_each_label_is_level_with_its_value_when_labels_wrap(paid, patient, language):
    person = companion(paid.treatment_request, patient, relationship="mother", justification="She is the only relative who can travel.")
    runs = words_at(pdf.companion_letter_pdf(person, language=language))
    pairs = {
        "en": [("Relationship", "Parent"), ("Justification", "She is the only"), ("Treatment of", "30 sessions"), ("Visa applied", "Short-stay")],
        "fr": [("Lien avec", "Parent"), ("Justification", "She is the only"), ("Traitement du", "30 séances"), ("Visa demandé", "Visa de court")],
    }[language]
    for label, value in pairs:
        assert abs(y_of(runs, label) - y_of(runs, value)) < 1.0, (label, value, runs)


# Refunds in the patient's letter -------------------------------------------------------------------


@pytest.mark.parametrize(("language", "refund_word", "net_label"), [("en", "Refund", "Received, net of refunds"), ("fr", "Remboursement", "Reçu, net des remboursements")])
def test_the_patient_letter_lists_the_refund_and_agrees_with_its_total(accepted_quote, staff, details, language, refund_word, net_label):
    pay_in_full(accepted_quote, staff, extra=Decimal("500.00"))
    services.record_payment(
        actor=staff, quote=accepted_quote, amount_eur="500.00", paid_on=TODAY, method="bank_transfer", reference="RB-1", kind="refund"
    )
    text = text_of(pdf.attestation_pdf(accepted_quote.treatment_request, language=language))
    total = format_eur(accepted_quote.total_eur, language).replace("\u00a0", " ")
    paid = format_eur(accepted_quote.total_eur + 500, language).replace("\u00a0", " ")
    assert paid in text and refund_word in text and "RB-1" in text
    assert f"−{format_eur(Decimal('500'), language)}".replace("\u00a0", " ") in text
    assert f"{net_label} {total}" in text


def test_moving_the_sessions_reissues_the_letters_without_a_download(paid, patient, staff, django_capture_on_commit_callbacks):
    r = paid.treatment_request
    person = companion(r, patient)
    course = book_sessions(r, staff, next_monday(TODAY + datetime.timedelta(days=40)), 30)
    for language in ("en", "fr"):
        issuing.issue_letter(actor=patient, treatment_request=r, language=language)
    issuing.issue_letter(actor=patient, treatment_request=r, companion=person, language="en")
    assert IssuedLetter.objects.filter(version=1).count() == 3

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        for session in course.sessions.order_by("-start"):
            session.start += datetime.timedelta(days=7)
            session.end += datetime.timedelta(days=7)
            session.save()

    # One new version per letter and language issued before; none for what was never asked for.
    assert sorted(IssuedLetter.objects.filter(version=2).values_list("traveller", "language")) == sorted(
        [("patient", "en"), ("patient", "fr"), (str(person.pk), "en")]
    )
    assert not IssuedLetter.objects.filter(version=3).exists()
    moved = next_monday(TODAY + datetime.timedelta(days=40)) + datetime.timedelta(days=7)
    assert f"from {moved.day} {moved:%B} {moved.year}" in text_of(bytes(IssuedLetter.objects.get(traveller="patient", version=2, language="en").pdf))
