"""The department's section on a request's page: triage against the catalogue, and the agenda."""

from __future__ import annotations

from django.utils import timezone

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.department import selectors, services
from protonpath.department.services import AGENDA_STATES


def request_panels(request, treatment_request) -> list[dict]:
    user = request.user
    if not user.is_authenticated or user.role not in selectors.TRIAGE_VIEWERS:
        return []
    audit.record(actor=user, action=AuditEvent.Action.VIEW, obj=treatment_request, summary="triage")
    pending = selectors.pending_item(treatment_request)
    may_schedule = (
        user.role in services.MEETING_ORGANISERS and pending is None and treatment_request.state in AGENDA_STATES
    )
    context = {
        "triage": selectors.explain(selectors.triage_request(treatment_request)),
        "pending_item": pending,
        "past_items": list(
            treatment_request.agenda_items.exclude(decision="").select_related("meeting").order_by("-meeting__starts_at")
        ),
        # The upcoming meetings (today's included): a past one left unmarked is no choice.
        "planned_meetings": list(selectors.planned_meetings().filter(starts_at__date__gte=timezone.localdate())[:20])
        if may_schedule
        else [],
        "may_schedule": may_schedule,
        "may_see_meetings": user.role in services.MEETING_VIEWERS,
    }
    return [{"template": "department/_request_panel.html", "context": context}]
