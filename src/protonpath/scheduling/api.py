"""API endpoints of the scheduling app (mounted at /api/scheduling/): the same rules as the pages."""

from __future__ import annotations

import datetime

from django.core.exceptions import PermissionDenied
from django.http import Http404
from ninja import Router, Schema

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.referrals import selectors as referral_selectors
from protonpath.scheduling import selectors, services, slots
from protonpath.scheduling.models import ConsultationKind

router = Router(tags=["scheduling"])


class CalendarEntryOut(Schema):
    kind: str
    start: datetime.datetime
    end: datetime.datetime
    title: str
    status: str


class ConsultationOut(Schema):
    id: int
    request_id: int
    doctor_id: int
    start: datetime.datetime
    end: datetime.datetime
    kind: str
    status: str


class BookingIn(Schema):
    doctor_id: int
    start: datetime.datetime
    kind: str = ConsultationKind.FIRST


class CancelIn(Schema):
    reason: str


def _consultation_out(c) -> dict:
    return {
        "id": c.pk,
        "request_id": c.treatment_request_id,
        "doctor_id": c.doctor_id,
        "start": c.start,
        "end": c.end,
        "kind": c.kind,
        "status": c.status,
    }


@router.get("/requests/{pk}/calendar", response=list[CalendarEntryOut])
def request_calendar(request, pk: int):
    treatment_request = referral_selectors.get_request_for(request.auth, pk, audit_view=False)
    if not selectors.may_see_consultations(request.auth, treatment_request):
        raise Http404
    audit.record(
        actor=request.auth, action=AuditEvent.Action.VIEW, obj=treatment_request, summary="calendar"
    )
    return [
        {"kind": e.kind, "start": e.start, "end": e.end, "title": e.title, "status": e.status}
        for e in selectors.patient_calendar(treatment_request, for_user=request.auth)
    ]


@router.get("/doctors/{doctor_id}/free-slots", response=list[datetime.datetime])
def free_slots(request, doctor_id: int, day: datetime.date, kind: str = ConsultationKind.FIRST):
    if not request.auth.is_department_staff:
        raise PermissionDenied
    doctor = selectors.oncologists().filter(pk=doctor_id).first()
    if doctor is None or kind not in slots.DURATION_MINUTES:
        raise Http404
    return selectors.free_slots(doctor, day, slots.DURATION_MINUTES[kind])


@router.post("/requests/{pk}/consultations", response={201: ConsultationOut})
def book(request, pk: int, payload: BookingIn):
    treatment_request = referral_selectors.get_request_for(request.auth, pk, audit_view=False)
    doctor = selectors.oncologists().filter(pk=payload.doctor_id).first()
    consultation = services.book_consultation(
        actor=request.auth,
        treatment_request=treatment_request,
        doctor=doctor,
        start=payload.start,
        kind=payload.kind,
    )
    return 201, _consultation_out(consultation)


@router.post("/consultations/{pk}/cancel", response=ConsultationOut)
def cancel(request, pk: int, payload: CancelIn):
    consultation = selectors.get_consultation_for(request.auth, pk)
    return _consultation_out(
        services.cancel_consultation(
            actor=request.auth, consultation=consultation, reason=payload.reason
        )
    )
