"""Facts of the past for tests of the later steps of the path (see scheduling/facts.py).

The steps after the first consultation check what happened: the consultation held, sessions on
the gantry, the first session given. Tests that walk the path record these facts here, dated in
the past, as the department's records would show them.
"""

from __future__ import annotations

import datetime

from django.utils import timezone

from protonpath.scheduling.models import (
    Consultation,
    ConsultationKind,
    ConsultationStatus,
    GantrySession,
    SessionStatus,
    TreatmentCourse,
)


def hold_first_consultation(treatment_request, doctor, *, days_ago: int = 1) -> Consultation:
    """The request's first consultation, held ``days_ago`` days ago (the booked one moved there)."""
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(days=days_ago)
    booked = Consultation.objects.filter(
        treatment_request=treatment_request, kind=ConsultationKind.FIRST, status=ConsultationStatus.BOOKED
    ).first()
    if booked is None:
        return Consultation.objects.create(
            treatment_request=treatment_request,
            doctor=doctor,
            start=start,
            end=start + datetime.timedelta(minutes=45),
            kind=ConsultationKind.FIRST,
            status=ConsultationStatus.DONE,
            booked_by=doctor,
        )
    booked.slots.all().delete()
    booked.start, booked.end = start, start + (booked.end - booked.start)
    booked.status = ConsultationStatus.DONE
    booked.save(update_fields=["start", "end", "status"])
    return booked


def course_with_sessions(treatment_request, actor, *, given: int = 0, pending: int = 1) -> TreatmentCourse:
    """A course of ``given + pending`` fractions: ``given`` sessions done on the last days, then
    ``pending`` planned ones from tomorrow."""
    today = timezone.localdate()
    course = TreatmentCourse.objects.create(
        treatment_request=treatment_request,
        fractions=given + pending,
        category="adult_standard",
        session_minutes=30,
        first_session_extra_minutes=15,
        ready_date=today - datetime.timedelta(days=given + 1),
        due_date=today + datetime.timedelta(days=30),
        created_by=actor,
    )
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    for number in range(1, given + pending + 1):
        start = noon + datetime.timedelta(days=number - given - 1 if number <= given else number - given)
        GantrySession.objects.create(
            course=course,
            fraction_number=number,
            start=start,
            end=start + datetime.timedelta(minutes=30),
            status=SessionStatus.DONE if number <= given else SessionStatus.PLANNED,
        )
    return course


def give_pending_sessions(course: TreatmentCourse) -> None:
    """Every session still to be given, recorded as given (the course ends)."""
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    for offset, session in enumerate(course.sessions.filter(status__in=[SessionStatus.PLANNED, SessionStatus.ANNOUNCED])):
        session.start = noon - datetime.timedelta(days=60 + offset)
        session.end = session.start + datetime.timedelta(minutes=30)
        session.status = SessionStatus.DONE
        session.save(update_fields=["start", "end", "status"])
