"""The facts the steps of the path depend on, beyond the request's state.

Registered in ``referrals.services.FACT_CHECKS``: a step is refused (and its button not offered)
until what it records has happened:

* "Start treatment planning": the first consultation has been held (not cancelled, and its time
  has come; a consultation marked done counts too);
* "Treatment scheduled": the course has sessions placed on the gantry;
* "First session given": a session of the course has been recorded as given, at a time that has
  come (on 1 December, a course whose first session is on 12 January has not started);
* "Treatment completed": no session of the course is still to be given, and at least one was.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext as _

from protonpath.referrals.models import TreatmentRequest
from protonpath.scheduling.models import (
    Consultation,
    ConsultationKind,
    ConsultationStatus,
    GantrySession,
    SessionStatus,
)

#: Sessions still to be given.
PENDING = (SessionStatus.PLANNED, SessionStatus.ANNOUNCED)


def _consultation_held(treatment_request: TreatmentRequest) -> bool:
    consultations = Consultation.objects.filter(treatment_request=treatment_request, kind=ConsultationKind.FIRST)
    return (
        consultations.filter(status=ConsultationStatus.DONE).exists()
        or consultations.filter(status=ConsultationStatus.BOOKED, start__lte=timezone.now()).exists()
    )


def _sessions(treatment_request: TreatmentRequest):
    return GantrySession.objects.filter(course__treatment_request=treatment_request)


def missing_fact(action: str, treatment_request: TreatmentRequest) -> str:
    """Why ``action`` may not be taken yet on this request, in the reader's language ("" if it may)."""
    if action == "start_planning" and not _consultation_held(treatment_request):
        return _("Treatment planning starts once the first consultation has been held.")
    if action == "schedule_treatment" and not _sessions(treatment_request).filter(status__in=PENDING).exists():
        return _("The treatment is scheduled once its sessions are placed on the gantry.")
    if action == "start_treatment" and not _sessions(treatment_request).filter(
        status=SessionStatus.DONE, start__lte=timezone.now()
    ).exists():
        return _("The treatment starts when its first session has been given and recorded in the gantry agenda.")
    if action == "complete_treatment":
        sessions = _sessions(treatment_request)
        if sessions.filter(status__in=PENDING).exists() or not sessions.filter(status=SessionStatus.DONE).exists():
            return _("The treatment is completed once every session has been given or recorded.")
    return ""
