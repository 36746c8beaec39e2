"""Background work for patients from abroad (Django Tasks: immediate by default, workers at scale)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django_tasks import task

from protonpath.international.models import AccompanyingPerson, IssuedLetter
from protonpath.referrals.models import TreatmentRequest


@task()
def reissue_letters(treatment_request_id: int) -> int:
    """Re-issue the request's consulate letters whose facts changed (the sessions moved), in the
    languages they were issued in; the earlier versions stay. Returns the number of new PDFs."""
    from protonpath.international import issuing

    r = TreatmentRequest.objects.select_related("patient").filter(pk=treatment_request_id).first()
    if r is None:
        return 0
    issued = 0
    for traveller, language in sorted(set(IssuedLetter.objects.filter(treatment_request=r).values_list("traveller", "language"))):
        companion = None
        if traveller != "patient":
            companion = AccompanyingPerson.objects.filter(pk=traveller, treatment_request=r).first()
            if companion is None:
                continue
        before = IssuedLetter.objects.filter(treatment_request=r).count()
        try:
            issuing.issue_letter(actor=None, treatment_request=r, companion=companion, language=language)
        except ValidationError:
            continue  # no longer writable (e.g. refunded): the next download says why
        issued += IssuedLetter.objects.filter(treatment_request=r).count() - before
    return issued
