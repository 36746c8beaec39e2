"""Reads of the scheduling app: free consultation slots, calendars, the gantry agenda, earliest start."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.apps import apps
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role, User
from protonpath.referrals import selectors as referral_selectors
from protonpath.referrals.models import TreatmentRequest
from protonpath.scheduling import incremental, slots
from protonpath.scheduling.calendar import WorkingCalendar, add_working_days
from protonpath.scheduling.model import Course
from protonpath.scheduling.models import (
    ACTIVE_SESSION_STATES,
    Consultation,
    ConsultationKind,
    ConsultationSlot,
    ConsultationStatus,
    GantrySession,
    MachineDowntime,
    SessionStatus,
    TreatmentCourse,
)


def consultation_hours():
    """Consultation opening hours: weekday -> ((opening, closing), ...), local time.

    From the department's opening hours of its outpatient consultations
    (``protonpath.department.selectors.opening_hours("consultations")``) when staff have entered
    them; otherwise the hours of seed page 000 (:data:`protonpath.scheduling.slots.CONSULTATION_HOURS`).
    """
    if apps.is_installed("protonpath.department"):
        try:
            from protonpath.department import selectors as department_selectors
        except ImportError:
            department_selectors = None
        getter = getattr(department_selectors, "opening_hours", None)
        hours = getter("consultations") if getter is not None else None
        if hours:
            return {weekday: tuple(periods) for weekday, periods in hours.items()}
    return slots.CONSULTATION_HOURS


def oncologists() -> QuerySet[User]:
    return User.objects.filter(role=Role.ONCOLOGIST, is_active=True).order_by(
        "last_name", "first_name", "pk"
    )


def taken_slots(doctor, day: date) -> list[datetime]:
    start = timezone.make_aware(datetime.combine(day, time.min))
    return list(
        ConsultationSlot.objects.filter(
            doctor=doctor, start__gte=start, start__lt=start + timedelta(days=1)
        ).values_list("start", flat=True)
    )


def free_slots(doctor, day: date, duration_min: int) -> list[datetime]:
    """Starts on ``day`` at which ``doctor`` can see a patient for ``duration_min`` minutes."""
    return slots.free_slot_starts(
        day,
        consultation_hours(),
        timezone.get_current_timezone(),
        duration_min,
        taken_slots(doctor, day),
        timezone.now(),
    )


def next_days_with_hours(start: date, count: int = 10) -> list[date]:
    return slots.next_open_days(start, consultation_hours(), count)


def upcoming_consultations(doctor=None, *, days: int = 14) -> QuerySet[Consultation]:
    """Booked consultations from today on for ``days`` days (of one doctor, or all)."""
    start, _end = day_bounds(timezone.localdate())
    qs = Consultation.objects.filter(
        status=ConsultationStatus.BOOKED, start__gte=start, start__lt=start + timedelta(days=days)
    ).select_related("doctor", "treatment_request__patient")
    if doctor is not None:
        qs = qs.filter(doctor=doctor)
    return qs.order_by("start", "doctor__last_name")


def may_see_consultations(user, treatment_request: TreatmentRequest) -> bool:
    """Staff and the request's owners see its consultations (the request itself being visible)."""
    return user.is_department_staff or referral_selectors.is_owner(user, treatment_request)


def get_consultation_for(user, pk) -> Consultation:
    """The consultation ``pk`` if ``user`` may see its request, else 404."""
    try:
        consultation = Consultation.objects.select_related(
            "treatment_request__patient", "doctor"
        ).get(pk=pk, treatment_request__in=referral_selectors.visible_requests(user))
    except (Consultation.DoesNotExist, ValueError, TypeError):
        audit.record(
            actor=user,
            action=AuditEvent.Action.DENIED,
            object_type="scheduling.consultation",
            object_id=str(pk),
        )
        raise Http404(_("No such consultation.")) from None
    return consultation


def consultations_of(treatment_request: TreatmentRequest) -> QuerySet[Consultation]:
    return treatment_request.consultations.select_related("doctor").order_by("start")


def course_of(treatment_request: TreatmentRequest) -> TreatmentCourse | None:
    return TreatmentCourse.objects.filter(treatment_request=treatment_request).first()


def sessions_of(treatment_request: TreatmentRequest) -> QuerySet[GantrySession]:
    return GantrySession.objects.filter(course__treatment_request=treatment_request).order_by(
        "start", "pk"
    )


@dataclass(frozen=True)
class CalendarEntry:
    """One line of a patient's calendar (a consultation or a gantry session)."""

    kind: str
    start: datetime
    end: datetime
    title: str
    status: str
    status_label: str
    obj: object


def patient_calendar(
    treatment_request: TreatmentRequest, *, for_user=None, include_inactive: bool = True
) -> list[CalendarEntry]:
    """Consultations and gantry sessions of a request, in time order.

    Outside the department (``for_user`` a patient or referring doctor) sessions appear once
    announced: planned ones may still move.
    """
    hide_planned = for_user is not None and not for_user.is_department_staff
    entries = []
    for c in consultations_of(treatment_request):
        if not include_inactive and c.status == ConsultationStatus.CANCELLED:
            continue
        entries.append(
            CalendarEntry(
                "consultation",
                c.start,
                c.end,
                str(c.get_kind_display()),
                c.status,
                str(c.get_status_display()),
                c,
            )
        )
    for s in sessions_of(treatment_request):
        if not include_inactive and s.status not in ACTIVE_SESSION_STATES:
            continue
        if hide_planned and s.status == SessionStatus.PLANNED:
            continue
        title = str(_("Proton therapy session %(n)s") % {"n": s.fraction_number})
        entries.append(
            CalendarEntry(
                "session", s.start, s.end, title, s.status, str(s.get_status_display()), s
            )
        )
    return sorted(entries, key=lambda e: (e.start, e.kind))


@dataclass(frozen=True)
class Agenda:
    day: date
    gantry_id: str
    sessions: list
    downtimes: list
    consultations: list
    is_working_day: bool


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = timezone.make_aware(datetime.combine(day, time.min))
    return start, timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def gantry_agenda(day: date, gantry_id: str = "G1") -> Agenda:
    """The gantry's sessions and downtimes on ``day``, and the day's consultations."""
    start, end = day_bounds(day)
    sessions = list(
        GantrySession.objects.filter(gantry_id=gantry_id, start__gte=start, start__lt=end)
        .select_related("course__treatment_request__patient")
        .order_by("start", "pk")
    )
    downtimes = list(
        MachineDowntime.objects.filter(gantry_id=gantry_id, start__lt=end, end__gt=start)
    )
    consultations = list(
        Consultation.objects.filter(
            start__gte=start,
            start__lt=end,
            status__in=[ConsultationStatus.BOOKED, ConsultationStatus.DONE],
        )
        .select_related("doctor", "treatment_request__patient")
        .order_by("start", "doctor__last_name")
    )
    return Agenda(
        day,
        gantry_id,
        sessions,
        downtimes,
        consultations,
        bool(WorkingCalendar.between(day, day).days),
    )


#: ASSUMPTION: from a decision in review to a plan ready to treat: first consultation, CT for
#: planning, contours, plan and its checks, about three weeks.
PLANNING_LEAD_WORKING_DAYS = 15
#: Fractions assumed when the review has not proposed a number yet (a common regimen).
DEFAULT_FRACTIONS = 30


class ReadyBasis:
    """What the plan-ready date of an estimate rests on."""

    #: An approved plan: ready the day of its approval (or tomorrow, if that is past).
    APPROVED_PLAN = "approved_plan"
    #: The booked (or held) first consultation, plus :data:`PLANNING_LEAD_WORKING_DAYS`.
    CONSULTATION = "consultation"
    #: Neither: today, plus :data:`PLANNING_LEAD_WORKING_DAYS`.
    TODAY = "today"


@dataclass(frozen=True)
class EarliestStart:
    ready_date: date
    first_day: date | None
    fractions: int
    category: str
    #: One of :class:`ReadyBasis`, and the day it rests on (the approval or the consultation).
    basis: str = ReadyBasis.TODAY
    basis_day: date | None = None


def _approved_plan_day(treatment_request: TreatmentRequest) -> date | None:
    """The day the request's current plan was approved, or None (no approved plan)."""
    if not apps.is_installed("protonpath.treatment"):
        return None
    plan = (
        treatment_request.plans.filter(state="approved", superseded_by__isnull=True)
        .order_by("-version")
        .first()
    )
    if plan is None:
        return None
    approved_at = plan.oncologist_approved_at or plan.physicist_approved_at or plan.created_at
    return timezone.localdate(approved_at)


def _first_consultation_day(treatment_request: TreatmentRequest) -> date | None:
    first = (
        treatment_request.consultations.filter(
            kind=ConsultationKind.FIRST,
            status__in=[ConsultationStatus.BOOKED, ConsultationStatus.DONE],
        )
        .order_by("start")
        .first()
    )
    return timezone.localdate(first.start) if first is not None else None


def plan_ready_date(treatment_request: TreatmentRequest, *, today: date | None = None) -> tuple[date, str, date | None]:
    """When the plan can be ready to treat: ``(day, basis, basis day)``.

    An approved plan is ready on its approval day; else planning takes
    :data:`PLANNING_LEAD_WORKING_DAYS` working days after the first consultation (booked or
    held), or after today when none is booked yet. Never before the next working day.
    """
    today = today or timezone.localdate()
    tomorrow = add_working_days(today + timedelta(days=1), 0)
    approved = _approved_plan_day(treatment_request)
    if approved is not None:
        return max(tomorrow, add_working_days(approved, 0)), ReadyBasis.APPROVED_PLAN, approved
    consultation = _first_consultation_day(treatment_request)
    if consultation is not None:
        ready = add_working_days(consultation + timedelta(days=1), PLANNING_LEAD_WORKING_DAYS)
        return max(tomorrow, ready), ReadyBasis.CONSULTATION, consultation
    return add_working_days(today + timedelta(days=1), PLANNING_LEAD_WORKING_DAYS), ReadyBasis.TODAY, None


def earliest_start(
    treatment_request: TreatmentRequest, *, today: date | None = None, gantry_id: str = "G1"
) -> EarliestStart:
    """The first day a course for this request could start on the gantry as it is booked now.

    The plan is ready on :func:`plan_ready_date` (an approved plan's day, else
    :data:`PLANNING_LEAD_WORKING_DAYS` working days after the booked first consultation, or
    after today when none is booked); the course (the proposed number of fractions, else
    :data:`DEFAULT_FRACTIONS`; a child's or an adult's session length) is fitted around every
    active session and downtime without moving anything (``incremental.earliest_start``).
    """
    from protonpath.scheduling.services import live_schedule

    today = today or timezone.localdate()
    course_row = course_of(treatment_request)
    if course_row is not None:
        category, fractions = course_row.category, course_row.fractions
    else:
        category = "paediatric_awake" if treatment_request.patient.is_child else "adult_standard"
        fractions = treatment_request.proposed_fractions or DEFAULT_FRACTIONS
    ready, basis, basis_day = plan_ready_date(treatment_request, today=today)
    end = ready + timedelta(days=365)
    live = live_schedule(gantry_id, ready, end)
    problem = dataclasses.replace(live.problem, fixed_bookings=live.bookings)
    probe = Course(
        f"request-{treatment_request.pk}", category, fractions, ready, end, gantry_id=gantry_id
    )
    return EarliestStart(
        ready, incremental.earliest_start(problem, probe), fractions, category, basis, basis_day
    )
