"""PDFs for patients from abroad (WeasyPrint from Django templates): the quote and the consulate letters.

Each document is written in English or French (``language``); money, dates and country names
follow the language.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from weasyprint import HTML

from protonpath.international import selectors
from protonpath.international.formatting import short_language
from protonpath.international.models import AccompanyingPerson, Quote
from protonpath.international.rules.letters import (
    ConsulateLetter,
    LetterKind,
    LetterNotReadyError,
    consulate_letters,
)
from protonpath.international.rules.visa import Requirement
from protonpath.referrals.models import TreatmentRequest

LANGUAGES = ("en", "fr")

VISA_LABELS = {
    Requirement.NONE: gettext_lazy("No visa"),
    Requirement.SHORT_STAY_VISA: gettext_lazy("Short-stay visa (Schengen, type C) for medical treatment"),
    Requirement.LONG_STAY_VISA: gettext_lazy("Long-stay visa (type D) for medical treatment"),
    Requirement.MANUAL_CHECK: gettext_lazy("To be checked by the department"),
}


def choose_language(requested: str | None, user=None) -> str:
    """``?lang=`` when it is English or French, else the user's preferred language."""
    if requested in LANGUAGES:
        return requested
    return short_language(getattr(user, "preferred_language", None) or settings.LANGUAGE_CODE)


def render_pdf(template_name: str, context: dict, *, language: str) -> bytes:
    with translation.override(language):
        html = render_to_string(
            template_name,
            {
                **context,
                "language": language,
                # The default name is translatable ("Service de protonthérapie" in French);
                # a deployment's own name has no entry and stays as it is.
                "department": _(settings.PROTONPATH_DEPARTMENT_NAME),
                "details": selectors.department_details(),
                "today": timezone.localdate(),
            },
        )
    return HTML(string=html, base_url=str(settings.BASE_DIR)).write_pdf()


def quote_pdf(quote: Quote, *, language: str) -> bytes:
    r = quote.treatment_request
    context = {
        "quote": quote,
        "r": r,
        "patient": r.patient,
        "lines": list(quote.lines.all()),
        "cost_lines": list(quote.cost_lines.all()),
        "pay": selectors.payment_instructions(quote, language) if quote.status in ("sent", "accepted") else None,
    }
    return render_pdf("international/pdf/quote.html", context, language=language)


def letters_for(treatment_request: TreatmentRequest) -> tuple[ConsulateLetter, ...]:
    """The consulate letters the rules allow now (paid in full, information complete), patient first.

    Raises ValidationError with the reason when they cannot be written yet.
    """
    quote = selectors.accepted_quote(treatment_request)
    if quote is None:
        raise ValidationError(_("Letters are written once the quote is accepted and paid in full."), code="not_ready")
    assessment = selectors.visa_assessment(treatment_request)
    if assessment.trip is None:
        raise ValidationError(assessment.error, code="not_ready")
    try:
        passports = {"patient": treatment_request.patient.passport_number}
        passports.update((str(c.pk), c.passport_number) for c in treatment_request.companions.all())
        letters = consulate_letters(
            assessment.trip, assessment.expected, quote.total_eur, selectors.rule_payments(quote.payments.all()),
            passports=passports,
        )
    except LetterNotReadyError as exc:
        if "not paid in full" in str(exc):
            raise ValidationError(_("Letters are written once the quote is accepted and paid in full."), code="unpaid") from None
        raise ValidationError(
            _("Information is missing: give each accompanying person's relationship to the patient or a justification."),
            code="missing",
        ) from None
    if treatment_request.patient.is_child and not guardians_of(treatment_request):
        raise ValidationError(
            _("The patient is a minor: add the parent or legal guardian who accompanies them (tick the box on the accompanying person)."),
            code="guardian",
        )
    return letters


def guardians_of(treatment_request: TreatmentRequest) -> list[AccompanyingPerson]:
    return [c for c in treatment_request.companions.all() if c.legal_guardian]


def _letter_context(treatment_request: TreatmentRequest, letter: ConsulateLetter) -> dict:
    quote = selectors.accepted_quote(treatment_request)
    # Every movement of money, refunds included: the table adds up to the amount the text states.
    movements = list(quote.payments.all())
    patient = treatment_request.patient
    return {
        "r": treatment_request,
        "patient": patient,
        "letter": letter,
        "quote": quote,
        "payments": movements,
        "refunded": any(p.kind == "refund" for p in movements),
        "minor": patient.is_child,
        "age": patient.age_on(timezone.localdate()),
        "guardians": guardians_of(treatment_request),
        "dates_booked": selectors.dates_are_booked(treatment_request),
        "visa_label": VISA_LABELS[letter.visa],
        "advice": letter.advice,
        "weeks": (letter.last_fraction_day - letter.first_fraction_day).days // 7 + 1,
    }


def _letter(treatment_request: TreatmentRequest, companion: AccompanyingPerson | None) -> ConsulateLetter:
    letters = letters_for(treatment_request)
    if companion is None:
        letter = next((x for x in letters if x.kind == LetterKind.PATIENT_ATTESTATION), None)
        if letter is None:
            raise ValidationError(_("The patient needs no visa: there is no letter for the consulate."), code="no_visa")
    else:
        letter = next((x for x in letters if x.traveller_reference == str(companion.pk)), None)
        if letter is None:
            raise ValidationError(_("This person needs no visa: there is no letter for the consulate."), code="no_visa")
    return letter


def letter_context(treatment_request: TreatmentRequest, companion: AccompanyingPerson | None = None) -> tuple[str, dict]:
    """The template and context of the patient's attestation (``companion`` None) or of an
    accompanying person's letter. Raises ValidationError when it cannot be written yet."""
    letter = _letter(treatment_request, companion)
    context = _letter_context(treatment_request, letter)
    if companion is None:
        return "international/pdf/attestation.html", context
    context["companion"] = companion
    return "international/pdf/companion_letter.html", context


def attestation_pdf(treatment_request: TreatmentRequest, *, language: str, issue: dict | None = None) -> bytes:
    """The hospital's attestation for the patient's visa application."""
    template, context = letter_context(treatment_request)
    return render_pdf(template, {**context, "issue": issue}, language=language)


def companion_letter_pdf(companion: AccompanyingPerson, *, language: str, issue: dict | None = None) -> bytes:
    """The letter for an accompanying person's visa application, with the relationship or justification."""
    template, context = letter_context(companion.treatment_request, companion)
    return render_pdf(template, {**context, "issue": issue}, language=language)


def pdf_filename(kind: str, reference: str, language: str) -> str:
    return f"{kind}-{reference}-{language}-{datetime.date.today().isoformat()}.pdf"
