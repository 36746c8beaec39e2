"""Background work of the path (Django Tasks: immediate by default, database workers at scale)."""

from __future__ import annotations

from django_tasks import task

from protonpath.referrals import notify
from protonpath.referrals.models import TreatmentRequest


@task()
def notify_transition(request_id: int) -> None:
    """E-mail the people concerned by a request's new state."""
    treatment_request = TreatmentRequest.objects.select_related("patient", "submitted_by", "referring_doctor").get(pk=request_id)
    notify.on_transition(treatment_request)


@task()
def notify_decision(request_id: int) -> None:
    """E-mail the review's decision to the patient and referring doctor."""
    treatment_request = TreatmentRequest.objects.select_related("patient", "submitted_by", "referring_doctor").get(pk=request_id)
    notify.tell_decision(treatment_request)
