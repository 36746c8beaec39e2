"""The indication category a new course is offered with, from what the file already says."""

from __future__ import annotations

from django.apps import apps

from protonpath.referrals.models import TreatmentRequest
from protonpath.scheduling.models import IndicationCategory

#: Quotes that describe the treatment the patient will have (not a draft, nor one refused).
_STANDING_QUOTES = ("accepted", "sent")


def quoted_anaesthesia(treatment_request: TreatmentRequest) -> bool:
    """Whether the request's standing quote includes general anaesthesia (False without the
    international app, or without a quote)."""
    if not apps.is_installed("protonpath.international"):
        return False
    quotes = apps.get_model("international", "Quote").objects.filter(treatment_request=treatment_request)
    for status in _STANDING_QUOTES:  # the accepted quote, else the latest one sent
        quote = quotes.filter(status=status).order_by("-id").first()
        if quote is not None:
            return quote.anaesthesia
    return False


def default_category(treatment_request: TreatmentRequest) -> str:
    """A child quoted with anaesthesia is treated under anaesthesia (longer sessions); another
    child awake; an adult in the standard category."""
    if not treatment_request.patient.is_child:
        return IndicationCategory.ADULT_STANDARD
    if quoted_anaesthesia(treatment_request):
        return IndicationCategory.PAEDIATRIC_ANAESTHESIA
    return IndicationCategory.PAEDIATRIC_AWAKE
