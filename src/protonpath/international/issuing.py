"""Consulate letters as issued: each version kept, a new one when what it says changes.

A letter states dates (the booked sessions once scheduled), the payments, the travellers'
identities and the department's signatory. :func:`issue_letter` compares what the letter would
say now with its latest version: the same facts give back the stored PDF (rendered in the other
language on first asking); different facts (the sessions moved, a refund, a corrected passport
number) issue the next version, and the earlier ones stay, listed and downloadable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.international import pdf, selectors
from protonpath.international.models import AccompanyingPerson, IssuedLetter
from protonpath.referrals.models import TreatmentRequest


def _facts(treatment_request: TreatmentRequest, companion: AccompanyingPerson | None) -> dict:
    """What the letter says (not when it was printed): raises ValidationError when not ready."""
    _template, context = pdf.letter_context(treatment_request, companion)
    letter = dataclasses.asdict(context["letter"])
    letter.pop("advice", None)  # follows from the dates; its wording may depend on the day of printing
    patient = treatment_request.patient
    details = selectors.department_details()

    def person(c: AccompanyingPerson) -> dict:
        return {
            "name": c.full_name, "born": c.birth_date, "nationality": c.nationality, "passport": c.passport_number,
            "relationship": c.relationship_fact, "justification": c.justification, "guardian": c.legal_guardian,
        }

    facts = {
        "letter": letter,
        "patient": {"name": patient.full_name, "born": patient.birth_date, "place": patient.birth_place, "nationality": patient.nationality},
        "companion": person(companion) if companion is not None else None,
        "guardians": [person(c) for c in context["guardians"]],
        "dates_booked": context["dates_booked"],
        "payments": [(p.kind, p.amount_eur, p.paid_on, p.reference) for p in context["payments"]],
        "department": {
            "address": details.address, "phone": details.phone, "email": details.email,
            "signatory": details.signatory_name, "title_en": details.signatory_title_en, "title_fr": details.signatory_title_fr,
        },
    }
    return json.loads(json.dumps(facts, default=str, sort_keys=True))


def _fingerprint(facts: dict) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def traveller_key(companion: AccompanyingPerson | None) -> str:
    return "patient" if companion is None else str(companion.pk)


def versions(treatment_request: TreatmentRequest, companion: AccompanyingPerson | None = None):
    """The issued versions of one traveller's letter, newest first (without their PDFs)."""
    return (
        IssuedLetter.objects.filter(treatment_request=treatment_request, traveller=traveller_key(companion))
        .defer("pdf")
        .order_by("-version", "language")
    )


@transaction.atomic
def issue_letter(*, actor, treatment_request: TreatmentRequest, companion: AccompanyingPerson | None = None, language: str) -> IssuedLetter:
    """The current version of the letter in ``language``, issued now if its facts changed.

    Raises ValidationError (from :func:`pdf.letters_for`) when no letter can be written yet.
    """
    TreatmentRequest.objects.select_for_update().filter(pk=treatment_request.pk).first()
    facts = _facts(treatment_request, companion)
    fingerprint = _fingerprint(facts)
    key = traveller_key(companion)
    mine = IssuedLetter.objects.filter(treatment_request=treatment_request, traveller=key)
    latest = mine.order_by("-version", "-issued_at").first()
    if latest is not None and latest.fingerprint == fingerprint:
        version = latest.version
        existing = mine.filter(version=version, language=language).first()
        if existing is not None:
            return existing
    else:
        version = (mine.aggregate(v=Max("version"))["v"] or 0) + 1
    previous = mine.filter(version=version - 1).order_by("issued_at").first() if version > 1 else None
    issued_at = timezone.now()
    issue = {
        "version": version,
        "issued_on": issued_at,
        "replaces": previous.version if previous else None,
        "replaces_on": previous.issued_at if previous else None,
    }
    if companion is None:
        data = pdf.attestation_pdf(treatment_request, language=language, issue=issue)
    else:
        data = pdf.companion_letter_pdf(companion, language=language, issue=issue)
    row = IssuedLetter.objects.create(
        treatment_request=treatment_request,
        companion=companion,
        traveller=key,
        version=version,
        language=language,
        fingerprint=fingerprint,
        facts=facts,
        pdf=data,
        issued_at=issued_at,
        issued_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit.record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        obj=row,
        treatment_request_id=treatment_request.pk,
        summary=f"consulate letter {key} v{version} {language}" + (" (facts changed)" if previous else ""),
    )
    return row
