"""Writes of the scheduling app: consultations, treatment courses, gantry sessions, downtimes.

Every function checks who may act, runs in one transaction, records the audit trail and sends
its messages after the commit. Bad input (a time outside opening hours, a holiday, the past, a
doctor already busy) raises :class:`ValidationError` with a message for the user and changes
nothing. The gantry functions convert between the models and the pure solver's dataclasses
(:mod:`protonpath.scheduling.model`) and let :func:`protonpath.scheduling.solver.solve` place
the sessions.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import date, datetime, time, timedelta

from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.db import IntegrityError, OperationalError, transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.referrals import notify as referral_notify
from protonpath.referrals import selectors as referral_selectors
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State, StateChange, TreatmentRequest
from protonpath.scheduling import ical, incremental, selectors, slots
from protonpath.scheduling.calendar import add_working_days
from protonpath.scheduling.config import default_gantry_day
from protonpath.scheduling.messages import infeasible_text
from protonpath.scheduling.model import (
    Booking,
    Course,
    Downtime,
    InfeasibleScheduleError,
    Problem,
    Schedule,
)
from protonpath.scheduling.models import (
    ACTIVE_SESSION_STATES,
    Consultation,
    ConsultationKind,
    ConsultationSlot,
    ConsultationStatus,
    GantrySession,
    IndicationCategory,
    MachineDowntime,
    SessionStatus,
    TreatmentCourse,
)
from protonpath.scheduling.solver import SolverOptions

logger = logging.getLogger(__name__)

#: Who books first consultations (the same roles as the path's ``book_consultation``).
FIRST_CONSULTATION_BOOKERS = frozenset({Role.ADMIN_STAFF, Role.HEAD})
#: Who books follow-up consultations and moves or cancels any consultation.
CONSULTATION_MANAGERS = frozenset({Role.ADMIN_STAFF, Role.HEAD, Role.ONCOLOGIST})
#: Who prepares treatment courses and schedules them on the gantry.
COURSE_PLANNERS = frozenset({Role.ADMIN_STAFF, Role.HEAD, Role.ONCOLOGIST, Role.PHYSICIST})
#: Who records a session as given or missed, and machine downtimes.
SESSION_RECORDERS = frozenset({Role.THERAPIST, Role.ADMIN_STAFF, Role.HEAD, Role.ONCOLOGIST})
#: Requests whose course may be scheduled on the gantry.
COURSE_STATES = frozenset(
    {State.CONSULTATION_BOOKED, State.PLANNING, State.SCHEDULED, State.IN_TREATMENT}
)
#: Solver time limit for the web (the problems are one or a few courses around fixed sessions).
WEB_SOLVER_SECONDS = 5.0

REFUSAL_MESSAGES = {
    "naive": lambda: _("The time has no time zone."),
    "duration": lambda: (
        _("A consultation lasts a whole number of %(n)s-minute slots.") % {"n": slots.SLOT_MINUTES}
    ),
    "past": lambda: _("This time is in the past."),
    "holiday": lambda: _("The department is closed on public holidays."),
    "weekend": lambda: _("The department is closed at weekends."),
    "hours": lambda: _("This time is outside the consultation opening hours."),
    "boundary": lambda: (
        _("Consultations start on the slots shown (every %(n)s minutes).")
        % {"n": slots.SLOT_MINUTES}
    ),
}


# Payment rule ---------------------------------------------------------------------------------


def has_passed_through_paid(treatment_request: TreatmentRequest) -> bool:
    """True if the request's history shows the quote was paid in full."""
    return StateChange.objects.filter(
        treatment_request=treatment_request, to_state=State.PAID
    ).exists()


def ensure_paid_if_international(treatment_request: TreatmentRequest) -> None:
    """Refuse consultations and sessions of a patient from abroad until the quote is paid in full."""
    if treatment_request.is_international and not (
        has_passed_through_paid(treatment_request) and _paid_in_full_now(treatment_request)
    ):
        raise ValidationError(
            _("A patient from abroad is seen and treated only once the quote is paid in full."),
            code="unpaid",
        )


def _paid_in_full_now(treatment_request: TreatmentRequest) -> bool:
    """The international app's balance (payments net of refunds), when that app is installed."""
    if not apps.is_installed("protonpath.international"):
        return True
    from protonpath.international import selectors as international_selectors

    return international_selectors.may_schedule_first_session(treatment_request)


#: Path actions a patient from abroad may take only once paid (checked against the history).
PAID_ACTIONS = frozenset(
    {"book_consultation", "start_planning", "schedule_treatment", "start_treatment"}
)


def require_paid_guard(action: str, treatment_request: TreatmentRequest, actor) -> None:
    """Guard on the request path (``referrals.services.TRANSITION_GUARDS``)."""
    if action in PAID_ACTIONS:
        ensure_paid_if_international(treatment_request)


# Consultations --------------------------------------------------------------------------------


def _refuse(code: str) -> ValidationError:
    return ValidationError(REFUSAL_MESSAGES[code](), code=code)


def _check_time(start: datetime, duration_min: int) -> None:
    problem = slots.refusal(
        start,
        duration_min,
        selectors.consultation_hours(),
        timezone.now(),
        timezone.get_current_timezone(),
    )
    if problem is not None:
        raise _refuse(problem.code)


def _check_doctor(doctor) -> None:
    if doctor is None or doctor.role != Role.ONCOLOGIST or not doctor.is_active:
        raise ValidationError(
            _("Consultations are given by the department's radiation oncologists."), code="doctor"
        )


def _check_patient_free(
    treatment_request: TreatmentRequest, start: datetime, end: datetime, exclude_pk=None
) -> None:
    clash = Consultation.objects.filter(
        treatment_request__patient=treatment_request.patient,
        status=ConsultationStatus.BOOKED,
        start__lt=end,
        end__gt=start,
    ).exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError(
            _("The patient already has a consultation at that time."), code="patient_busy"
        )


def _take_slots(consultation: Consultation) -> None:
    """Insert the consultation's slot rows: the database refuses a doctor's slot taken twice."""
    rows = [
        ConsultationSlot(consultation=consultation, doctor=consultation.doctor, start=s)
        for s in slots.slots_covering(consultation.start, consultation.duration_min)
    ]
    try:
        with transaction.atomic():
            ConsultationSlot.objects.bulk_create(rows)
    except IntegrityError:
        raise ValidationError(
            _("The doctor is no longer free at that time: please choose another slot."),
            code="doctor_busy",
        ) from None


def _busy(exc: OperationalError) -> Exception:
    """A write that lost a race for a lock (SQLite 'database is locked', a PostgreSQL deadlock)
    is a booking that came second; any other database error is not ours to explain."""
    text = str(exc).lower()
    if "locked" in text or "deadlock" in text or "could not serialize" in text:
        return ValidationError(
            _("Someone else was booking at the same moment: please choose the slot again."),
            code="busy",
        )
    return exc


def _may_book_first(treatment_request: TreatmentRequest) -> bool:
    if treatment_request.state == State.PAID:
        return True
    if treatment_request.state == State.ACCEPTED:
        return (
            not treatment_request.is_international
            and treatment_request.decision_sent_at is not None
        )
    # A first consultation cancelled after booking can be booked again.
    return treatment_request.state in (State.CONSULTATION_BOOKED, State.PLANNING)


def book_consultation(
    *,
    actor,
    treatment_request: TreatmentRequest,
    doctor,
    start: datetime,
    kind: str = ConsultationKind.FIRST,
    duration_min: int | None = None,
) -> Consultation:
    """Book a consultation; a first one moves the request to 'first consultation booked'.

    Raises :class:`ValidationError` for a bad time, a busy doctor or patient, or a request not
    ready for it (a patient from abroad who has not paid in full), :class:`PermissionDenied` for
    a role that may not book.
    """
    if kind not in ConsultationKind.values:
        raise ValidationError(_("Unknown kind of consultation."), code="kind")
    allowed = (
        FIRST_CONSULTATION_BOOKERS if kind == ConsultationKind.FIRST else CONSULTATION_MANAGERS
    )
    if not actor.is_authenticated or actor.role not in allowed:
        audit.record(
            actor=actor,
            action=AuditEvent.Action.DENIED,
            obj=treatment_request,
            summary="book consultation",
        )
        raise PermissionDenied(_("You may not book this consultation."))
    duration_min = duration_min or slots.DURATION_MINUTES[kind]
    _check_doctor(doctor)
    _check_time(start, duration_min)
    end = start + timedelta(minutes=duration_min)
    try:
        with transaction.atomic():
            locked = (
                TreatmentRequest.objects.select_for_update()
                .select_related("patient")
                .get(pk=treatment_request.pk)
            )
            ensure_paid_if_international(locked)
            if kind == ConsultationKind.FIRST:
                if not _may_book_first(locked):
                    raise ValidationError(
                        _("A first consultation cannot be booked while the request is '%(state)s'.")
                        % {"state": locked.get_state_display()},
                        code="state",
                    )
                if locked.consultations.filter(
                    kind=ConsultationKind.FIRST, status=ConsultationStatus.BOOKED
                ).exists():
                    raise ValidationError(
                        _("A first consultation is already booked."), code="already_booked"
                    )
            elif not locked.is_open:
                raise ValidationError(_("This request is closed."), code="state")
            _check_patient_free(locked, start, end)
            try:
                with transaction.atomic():
                    consultation = Consultation.objects.create(
                        treatment_request=locked,
                        doctor=doctor,
                        start=start,
                        end=end,
                        kind=kind,
                        booked_by=actor,
                    )
            except IntegrityError:
                raise ValidationError(
                    _("A first consultation is already booked."), code="already_booked"
                ) from None
            _take_slots(consultation)
            audit.record(
                actor=actor,
                action=AuditEvent.Action.CREATE,
                obj=consultation,
                treatment_request_id=locked.pk,
                summary=f"consultation kind={kind} doctor={doctor.pk}",
            )
            if kind == ConsultationKind.FIRST and locked.state in (State.ACCEPTED, State.PAID):
                referral_services.perform(
                    actor=actor, treatment_request=locked, action="book_consultation"
                )
            transaction.on_commit(lambda: send_consultation_message(consultation, "booked"))
    except OperationalError as exc:
        raise _busy(exc) from None
    return consultation


def may_manage_consultation(actor, consultation: Consultation) -> bool:
    """Whether ``actor`` may move or manage a consultation: consultation managers, or its doctor."""
    return actor.is_authenticated and (
        actor.role in CONSULTATION_MANAGERS or actor.pk == consultation.doctor_id
    )


def reschedule_consultation(
    *, actor, consultation: Consultation, start: datetime, doctor=None
) -> Consultation:
    """Move a booked consultation (optionally to another doctor): all or nothing.

    If the new time is refused the consultation keeps its old time and doctor.
    """
    if not may_manage_consultation(actor, consultation):
        audit.record(
            actor=actor, action=AuditEvent.Action.DENIED, obj=consultation, summary="reschedule"
        )
        raise PermissionDenied(_("You may not move this consultation."))
    doctor = doctor or consultation.doctor
    _check_doctor(doctor)
    duration_min = consultation.duration_min
    _check_time(start, duration_min)
    try:
        with transaction.atomic():
            locked = (
                Consultation.objects.select_for_update()
                .select_related("treatment_request__patient")
                .get(pk=consultation.pk)
            )
            if locked.status != ConsultationStatus.BOOKED:
                raise ValidationError(_("Only a booked consultation can be moved."), code="state")
            old = timezone.localtime(locked.start)
            end = start + timedelta(minutes=duration_min)
            _check_patient_free(locked.treatment_request, start, end, exclude_pk=locked.pk)
            locked.slots.all().delete()
            locked.start, locked.end, locked.doctor = start, end, doctor
            locked.sequence += 1
            locked.save(update_fields=["start", "end", "doctor", "sequence"])
            _take_slots(locked)
            audit.record(
                actor=actor,
                action=AuditEvent.Action.UPDATE,
                obj=locked,
                treatment_request_id=locked.treatment_request_id,
                summary=f"rescheduled from {old:%Y-%m-%d %H:%M} doctor={doctor.pk}",
            )
            transaction.on_commit(lambda: send_consultation_message(locked, "moved"))
    except OperationalError as exc:
        raise _busy(exc) from None
    return locked


def may_cancel_consultation(actor, consultation: Consultation) -> bool:
    if may_manage_consultation(actor, consultation):
        return True
    return referral_selectors.is_owner(actor, consultation.treatment_request)


@transaction.atomic
def cancel_consultation(*, actor, consultation: Consultation, reason: str) -> Consultation:
    """Cancel a booked consultation, with a reason; the slots become free again."""
    if not may_cancel_consultation(actor, consultation):
        audit.record(
            actor=actor, action=AuditEvent.Action.DENIED, obj=consultation, summary="cancel"
        )
        raise PermissionDenied(_("You may not cancel this consultation."))
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Please give a reason."), code="note")
    locked = Consultation.objects.select_for_update().get(pk=consultation.pk)
    if locked.status != ConsultationStatus.BOOKED:
        raise ValidationError(_("This consultation is not booked."), code="state")
    locked.slots.all().delete()
    locked.status = ConsultationStatus.CANCELLED
    locked.cancelled_by = actor
    locked.cancelled_at = timezone.now()
    locked.cancellation_reason = reason[:1000]
    locked.sequence += 1
    locked.save()
    audit.record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        obj=locked,
        treatment_request_id=locked.treatment_request_id,
        summary="cancelled",
    )
    transaction.on_commit(lambda: send_consultation_message(locked, "cancelled"))
    return locked


@transaction.atomic
def mark_consultation_done(*, actor, consultation: Consultation) -> Consultation:
    if not may_manage_consultation(actor, consultation):
        raise PermissionDenied(_("You may not do this."))
    locked = Consultation.objects.select_for_update().get(pk=consultation.pk)
    if locked.status != ConsultationStatus.BOOKED or locked.start > timezone.now():
        raise ValidationError(
            _("Only a booked consultation that has begun can be marked as done."), code="state"
        )
    locked.slots.all().delete()
    locked.status = ConsultationStatus.DONE
    locked.save(update_fields=["status"])
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=locked, summary="done")
    return locked


# Messages -------------------------------------------------------------------------------------


def _language_of(user) -> str:
    return getattr(user, "preferred_language", None) or settings.LANGUAGE_CODE


def _when(start: datetime) -> str:
    local = timezone.localtime(start)
    return f"{date_format(local.date(), 'DATE_FORMAT')} {local:%H:%M}"


def send_consultation_message(consultation: Consultation, event: str) -> None:
    """Tell the patient side and the oncologist that a consultation was booked, moved or cancelled.

    The message carries the date, time, place and doctor, never medical content; a calendar
    entry (``.ics``) is attached.
    """
    r = consultation.treatment_request
    department = settings.PROTONPATH_DEPARTMENT_NAME
    method = "CANCEL" if event == "cancelled" else "REQUEST"
    attachment = ical.calendar([ical.consultation_event(consultation)], method=method)
    patient_user = r.patient.user or r.submitted_by
    groups = [
        (referral_notify.external_recipients(r), _language_of(patient_user)),
        ([consultation.doctor.email], _language_of(consultation.doctor)),
    ]
    for recipients, language in groups:
        recipients = sorted({e for e in recipients if e})
        if not recipients:
            continue
        with translation.override(language):
            subjects = {
                "booked": _("Consultation booked: %(when)s"),
                "moved": _("Consultation moved: %(when)s"),
                "cancelled": _("Consultation cancelled: %(when)s"),
            }
            when = _when(consultation.start)
            link = settings.PROTONPATH_BASE_URL + reverse("referrals:detail", args=[r.pk])
            lines = [
                {
                    "booked": _("A consultation has been booked."),
                    "moved": _("A consultation has been moved to a new time."),
                    "cancelled": _("A consultation has been cancelled."),
                }[event],
                _("Request: %(ref)s") % {"ref": r.reference},
                _("When: %(when)s (Paris time)") % {"when": when},
                _("With: %(doctor)s")
                % {"doctor": consultation.doctor.get_full_name() or consultation.doctor.username},
                _("Where: %(place)s, outpatient consultations") % {"place": department},
                _("Sign in to see the details: %(link)s") % {"link": link},
                department,
            ]
            message = EmailMessage(
                subjects[event] % {"when": when},
                "\n\n".join(lines),
                settings.DEFAULT_FROM_EMAIL,
                recipients,
            )
        message.attach(
            "consultation.ics", attachment, f"text/calendar; charset=utf-8; method={method}"
        )
        message.send(fail_silently=False)
    logger.info("consultation message consultation=%s event=%s", consultation.pk, event)


def send_course_message(course: TreatmentCourse, heading: str) -> None:
    """Send the patient side the course's sessions as a calendar (no medical content)."""
    r = course.treatment_request
    sessions = list(course.sessions.filter(status__in=ACTIVE_SESSION_STATES).order_by("start"))
    if not sessions:
        return
    attachment = ical.calendar([ical.session_event(s) for s in sessions], method="PUBLISH")
    recipients = sorted({e for e in referral_notify.external_recipients(r) if e})
    with translation.override(_language_of(r.patient.user or r.submitted_by)):
        link = settings.PROTONPATH_BASE_URL + reverse("referrals:detail", args=[r.pk])
        lines = [
            str(heading),
            _("Request: %(ref)s") % {"ref": r.reference},
            _("%(n)s sessions, from %(first)s to %(last)s (Paris time).")
            % {
                "n": len(sessions),
                "first": _when(sessions[0].start),
                "last": _when(sessions[-1].start),
            },
            _("The attached calendar lists every session. Sign in to see the details: %(link)s")
            % {"link": link},
            settings.PROTONPATH_DEPARTMENT_NAME,
        ]
        message = EmailMessage(
            _("Treatment sessions: %(ref)s") % {"ref": r.reference},
            "\n\n".join(lines),
            settings.DEFAULT_FROM_EMAIL,
            recipients,
        )
    message.attach("sessions.ics", attachment, "text/calendar; charset=utf-8; method=PUBLISH")
    message.send(fail_silently=False)
    logger.info("course message course=%s sessions=%d", course.pk, len(sessions))


# Gantry: conversion between models and the solver's dataclasses ------------------------------

HORIZON_EXTRA_DAYS = 120


def _local_minutes(moment: datetime) -> tuple[date, int]:
    local = timezone.localtime(moment)
    return local.date(), local.hour * 60 + local.minute


def _aware(day: date, minutes: int) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(minutes // 60, minutes % 60)))


def booking_of(session: GantrySession) -> Booking:
    """The solver's view of a session; given and announced sessions are 'announced' (fixed)."""
    day, start_min = _local_minutes(session.start)
    return Booking(
        course_id=str(session.course_id),
        fraction_number=session.fraction_number,
        gantry_id=session.gantry_id,
        day=day,
        start_min=start_min,
        duration_min=int((session.end - session.start).total_seconds() // 60),
        announced=session.status != SessionStatus.PLANNED,
    )


def downtimes_between(
    gantry_id: str, first: date, last: date, exclude_pk=None
) -> tuple[Downtime, ...]:
    """The recorded downtimes as the solver's per-day blocks (clipped to the gantry day)."""
    gantry_day = default_gantry_day()
    result = []
    window_start, window_end = _aware(first, 0), _aware(last + timedelta(days=1), 0)
    rows = MachineDowntime.objects.filter(
        gantry_id=gantry_id, start__lt=window_end, end__gt=window_start
    ).exclude(pk=exclude_pk)
    for downtime in rows:
        result.extend(_downtime_blocks(downtime, first, last, gantry_day))
    return tuple(result)


def _downtime_blocks(
    downtime: MachineDowntime, first: date, last: date, gantry_day
) -> list[Downtime]:
    blocks = []
    day = max(timezone.localtime(downtime.start).date(), first)
    while day <= min(timezone.localtime(downtime.end).date(), last):
        day_open, day_close = (
            _aware(day, gantry_day.opening_min),
            _aware(day, gantry_day.closing_min),
        )
        start, end = max(downtime.start, day_open), min(downtime.end, day_close)
        if start < end:
            blocks.append(
                Downtime(
                    downtime.gantry_id,
                    day,
                    _local_minutes(start)[1],
                    _local_minutes(end)[1],
                    downtime.reason,
                )
            )
        day += timedelta(days=1)
    return blocks


def course_of(course: TreatmentCourse, **overrides) -> Course:
    values = {
        "course_id": str(course.pk),
        "category": course.category,
        "fraction_count": course.fractions,
        "ready_date": course.ready_date,
        "due_date": course.due_date,
        "urgency": course.urgency,
        "gantry_id": course.gantry_id,
        "session_min": course.session_minutes,
        "first_session_min": course.first_session_minutes,
    }
    values.update(overrides)
    return Course(**values)


def live_schedule(
    gantry_id: str, start_date: date, end_date: date, *, courses=(), exclude_downtime_pk=None
) -> Schedule:
    """The gantry's active sessions from ``start_date`` on, as the solver's :class:`Schedule`.

    ``courses`` are the course definitions the incremental functions may place again (their
    sessions are then movable); the sessions of every other course stay fixed.
    """
    sessions = GantrySession.objects.filter(
        gantry_id=gantry_id, status__in=ACTIVE_SESSION_STATES, start__gte=_aware(start_date, 0)
    ).select_related("course")
    bookings = tuple(booking_of(s) for s in sessions)
    usual = {
        str(s.course_id): s.course.usual_start_min
        for s in sessions
        if s.course.usual_start_min is not None
    }
    problem = Problem(
        gantry_day=default_gantry_day(),
        courses=tuple(courses),
        start_date=start_date,
        end_date=end_date,
        gantry_ids=(gantry_id,),
        downtimes=downtimes_between(
            gantry_id, start_date, end_date, exclude_pk=exclude_downtime_pk
        ),
    )
    return Schedule(problem=problem, bookings=bookings, usual_start_min=usual, method="live")


def _solver_options() -> SolverOptions:
    return SolverOptions(time_limit_s=WEB_SOLVER_SECONDS)


def _infeasible(exc: InfeasibleScheduleError) -> ValidationError:
    """The solver's refusal for the user: each course and constraint in the active language
    (``scheduling.messages``, from the error's codes and params)."""
    return ValidationError(
        _("The gantry schedule has no room for this: %(reasons)s")
        % {"reasons": infeasible_text(exc)},
        code="infeasible",
    )


def _create_sessions(
    course: TreatmentCourse, bookings, status=SessionStatus.PLANNED
) -> list[GantrySession]:
    sessions = [
        GantrySession(
            course=course,
            fraction_number=b.fraction_number,
            gantry_id=b.gantry_id,
            start=_aware(b.day, b.start_min),
            end=_aware(b.day, b.end_min),
            status=status,
        )
        for b in bookings
    ]
    try:
        with transaction.atomic():
            return GantrySession.objects.bulk_create(sessions)
    except IntegrityError:
        raise ValidationError(
            _("The gantry schedule changed meanwhile: please try again."), code="conflict"
        ) from None


def apply_schedule(
    result: Schedule, course_ids, *, since: date, note: str
) -> dict[int, list[GantrySession]]:
    """Make the active sessions of ``course_ids`` (from ``since`` on) those of ``result``.

    Sessions that keep their day, time and length stay (renumbered if needed); the others are
    cancelled with ``note``; new bookings become sessions (announced if the course's patient had
    been told its sessions). Returns the new sessions of each course.
    """
    created: dict[int, list[GantrySession]] = {}
    pending = []
    # First free the places of every course (a course's new session may take another's old place).
    for course_id in course_ids:
        course = TreatmentCourse.objects.select_for_update().get(pk=int(course_id))
        wanted = {
            (b.day, b.start_min, b.duration_min): b
            for b in result.all_bookings()
            if b.course_id == str(course.pk)
        }
        existing = list(
            course.sessions.filter(status__in=ACTIVE_SESSION_STATES, start__gte=_aware(since, 0))
        )
        announced = course.sessions.filter(
            status__in=[SessionStatus.ANNOUNCED, SessionStatus.DONE]
        ).exists()
        kept = []
        for session in existing:
            b = booking_of(session)
            if (b.day, b.start_min, b.duration_min) in wanted:
                kept.append(
                    (session, wanted.pop((b.day, b.start_min, b.duration_min)).fraction_number)
                )
            else:
                session.status = SessionStatus.CANCELLED
                session.status_note = note
                session.sequence += 1
                session.save(update_fields=["status", "status_note", "sequence"])
        # Two passes so that no two active sessions of the course ever share a number.
        moving = [(s, n) for s, n in kept if s.fraction_number != n]
        for session, _number in moving:
            session.fraction_number += 1000
            session.save(update_fields=["fraction_number"])
        for session, number in moving:
            session.fraction_number = number
            session.sequence += 1
            session.save(update_fields=["fraction_number", "sequence"])
        pending.append((course, wanted, announced, bool(moving)))
    for course, wanted, announced, renumbered in pending:
        status = SessionStatus.ANNOUNCED if announced else SessionStatus.PLANNED
        created[course.pk] = _create_sessions(
            course, sorted(wanted.values(), key=lambda b: (b.day, b.start_min)), status
        )
        usual = result.usual_start_min.get(str(course.pk))
        if usual is not None and usual != course.usual_start_min:
            course.usual_start_min = usual
            course.save(update_fields=["usual_start_min"])
        if announced and (created[course.pk] or renumbered):
            transaction.on_commit(
                lambda c=course: send_course_message(c, _("Your treatment sessions have changed."))
            )
    return created


def _tomorrow() -> date:
    return timezone.localdate() + timedelta(days=1)


# Gantry: courses ------------------------------------------------------------------------------


def category_durations(category: str) -> tuple[int, int]:
    """Session minutes and first-session extra minutes of an indication category (gantry data)."""
    data = default_gantry_day().categories[category]
    return data.session_duration_min, data.first_session_duration_min - data.session_duration_min


@transaction.atomic
def create_course(
    *,
    actor,
    treatment_request: TreatmentRequest,
    category: str,
    ready_date: date,
    fractions: int | None = None,
    due_date: date | None = None,
    urgency: str = "standard",
) -> TreatmentCourse:
    """Describe the gantry sessions a request needs (the solver places them later)."""
    if not actor.is_authenticated or actor.role not in COURSE_PLANNERS:
        raise PermissionDenied(_("You may not prepare treatment courses."))
    r = (
        TreatmentRequest.objects.select_for_update()
        .select_related("patient")
        .get(pk=treatment_request.pk)
    )
    if r.state not in COURSE_STATES:
        raise ValidationError(
            _("A treatment course is prepared after the first consultation is booked."),
            code="state",
        )
    ensure_paid_if_international(r)
    if TreatmentCourse.objects.filter(treatment_request=r).exists():
        raise ValidationError(_("This request already has a treatment course."), code="exists")
    if category not in IndicationCategory.values:
        raise ValidationError(_("Unknown indication category."), code="category")
    anaesthesia = default_gantry_day().categories[category].anaesthesia
    if anaesthesia and not r.patient.is_child:
        raise ValidationError(
            _("General anaesthesia sessions are for children."), code="anaesthesia"
        )
    fractions = fractions or r.proposed_fractions
    if not fractions or not 1 <= int(fractions) <= 60:
        raise ValidationError(_("The course needs 1 to 60 fractions."), code="fractions")
    if ready_date < timezone.localdate():
        raise _refuse("past")
    urgency_data = default_gantry_day().urgencies.get(urgency)
    if urgency_data is None:
        raise ValidationError(_("Unknown urgency."), code="urgency")
    due_date = due_date or add_working_days(ready_date, urgency_data.due_working_days)
    if due_date < ready_date:
        raise ValidationError(_("The latest start cannot be before the plan is ready."), code="due")
    session_min, extra_min = category_durations(category)
    course = TreatmentCourse.objects.create(
        treatment_request=r,
        fractions=int(fractions),
        category=category,
        session_minutes=session_min,
        first_session_extra_minutes=extra_min,
        under_anaesthesia=anaesthesia,
        ready_date=ready_date,
        due_date=due_date,
        urgency=urgency,
        created_by=actor,
    )
    audit.record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        obj=course,
        treatment_request_id=r.pk,
        summary=f"fractions={fractions}",
    )
    return course


def _replaceable_courses(gantry_id: str, first: date, exclude_pk: int) -> list[TreatmentCourse]:
    """Courses whose active sessions are all planned (none announced or given) and from ``first`` on."""
    candidates = (
        TreatmentCourse.objects.filter(gantry_id=gantry_id, sessions__status=SessionStatus.PLANNED)
        .exclude(pk=exclude_pk)
        .distinct()
    )
    result = []
    for course in candidates:
        active = course.sessions.filter(status__in=ACTIVE_SESSION_STATES)
        if (
            not active.exclude(status=SessionStatus.PLANNED).exists()
            and not active.filter(start__lt=_aware(first, 0)).exists()
        ):
            result.append(course)
    return result


def _definition(course: TreatmentCourse, start_date: date) -> Course:
    ready = max(course.ready_date, start_date)
    return course_of(course, ready_date=ready, due_date=max(course.due_date, ready))


@transaction.atomic
def schedule_course(
    *, actor, course: TreatmentCourse, move_planned: bool = False
) -> list[GantrySession]:
    """Place a course's sessions in the live gantry schedule (``incremental.add_course``).

    Announced and given sessions never move. Planned sessions of other courses stay where they
    are unless ``move_planned`` is set: then courses not yet announced are placed again together
    with this one (the solver may then find an earlier start for the urgent ones).
    """
    if not actor.is_authenticated or actor.role not in COURSE_PLANNERS:
        raise PermissionDenied(_("You may not schedule treatment courses."))
    course = (
        TreatmentCourse.objects.select_for_update()
        .select_related("treatment_request__patient")
        .get(pk=course.pk)
    )
    ensure_paid_if_international(course.treatment_request)
    if course.sessions.filter(status__in=ACTIVE_SESSION_STATES).exists():
        raise ValidationError(_("This course is already scheduled."), code="scheduled")
    start_date = max(course.ready_date, _tomorrow())
    others = _replaceable_courses(course.gantry_id, start_date, course.pk) if move_planned else []
    end_date = max(course.due_date, start_date) + timedelta(
        days=course.fractions * 2 + HORIZON_EXTRA_DAYS
    )
    for other in others:
        end_date = max(
            end_date,
            max(other.due_date, start_date)
            + timedelta(days=other.fractions * 2 + HORIZON_EXTRA_DAYS),
        )
    live = live_schedule(
        course.gantry_id, start_date, end_date, courses=[_definition(o, start_date) for o in others]
    )
    new_course = _definition(course, start_date)
    try:
        result = incremental.add_course(
            live,
            new_course,
            allow_moving=bool(others),
            options=dataclasses.replace(_solver_options(), allow_late=True),
        )
    except InfeasibleScheduleError as exc:
        raise _infeasible(exc) from None
    created = apply_schedule(
        result, [str(o.pk) for o in others] + [str(course.pk)], since=start_date, note="moved"
    )
    for other in others:
        audit.record(
            actor=actor, action=AuditEvent.Action.UPDATE, obj=other, summary="sessions placed again"
        )
    audit.record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        obj=course,
        treatment_request_id=course.treatment_request_id,
        summary=f"scheduled {len(created[course.pk])} sessions moved_courses={len(others)}",
    )
    return created[course.pk]


@transaction.atomic
def announce_course(*, actor, course: TreatmentCourse) -> int:
    """Tell the patient the planned sessions; announced sessions are fixed from then on.

    Moves the request to 'treatment scheduled' when it is in planning.
    """
    if not actor.is_authenticated or actor.role not in COURSE_PLANNERS:
        raise PermissionDenied(_("You may not do this."))
    course = (
        TreatmentCourse.objects.select_for_update()
        .select_related("treatment_request")
        .get(pk=course.pk)
    )
    r = course.treatment_request
    ensure_paid_if_international(r)
    if r.state not in (State.PLANNING, State.SCHEDULED, State.IN_TREATMENT):
        raise ValidationError(
            _("Sessions are announced once treatment planning has started."), code="state"
        )
    planned = course.sessions.filter(status=SessionStatus.PLANNED)
    count = planned.count()
    if not count:
        raise ValidationError(_("There are no planned sessions to announce."), code="empty")
    for session in planned:
        session.status = SessionStatus.ANNOUNCED
        session.sequence += 1
        session.save(update_fields=["status", "sequence"])
    audit.record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        obj=course,
        treatment_request_id=r.pk,
        summary=f"announced {count}",
    )
    if r.state == State.PLANNING:
        referral_services.perform(actor=actor, treatment_request=r, action="schedule_treatment")
    transaction.on_commit(
        lambda: send_course_message(course, _("Your treatment sessions are scheduled."))
    )
    return count


# Gantry: what happened ------------------------------------------------------------------------


def _reschedule_horizon(course_ids, start_date: date) -> date:
    longest = max(
        (c.fractions for c in TreatmentCourse.objects.filter(pk__in=course_ids)), default=1
    )
    last = (
        GantrySession.objects.filter(course_id__in=course_ids, status__in=ACTIVE_SESSION_STATES)
        .order_by("-start")
        .first()
    )
    last_day = timezone.localtime(last.start).date() if last else start_date
    return max(last_day, start_date) + timedelta(days=longest * 2 + HORIZON_EXTRA_DAYS)


def _definitions_for_reschedule(course_ids, start_date: date, end_date: date) -> list[Course]:
    """Definitions of the courses hit (used when a course must be placed again from the start).

    Lateness is allowed when rescheduling, so their due date is the end of the horizon.
    """
    return [
        course_of(c, ready_date=max(c.ready_date, start_date), due_date=end_date)
        for c in TreatmentCourse.objects.filter(pk__in=course_ids)
    ]


@transaction.atomic
def record_session(*, actor, session: GantrySession, outcome: str, note: str = "") -> GantrySession:
    """Record a session as given (``done``) or ``missed``; a missed fraction goes to the end.

    A missed session is handed to ``incremental.reschedule_after_missed_session``: the course's
    other sessions keep their times and are numbered again, and the fraction is added after the
    last one (a course whose first session was missed is placed again from the next day).
    """
    if not actor.is_authenticated or actor.role not in SESSION_RECORDERS:
        raise PermissionDenied(_("You may not record sessions."))
    session = (
        GantrySession.objects.select_for_update()
        .select_related("course__treatment_request")
        .get(pk=session.pk)
    )
    if outcome not in (SessionStatus.DONE, SessionStatus.MISSED):
        raise ValidationError(_("Unknown outcome."), code="outcome")
    if session.status not in (SessionStatus.PLANNED, SessionStatus.ANNOUNCED):
        raise ValidationError(_("This session has already been recorded."), code="state")
    if session.start > timezone.now():
        raise ValidationError(_("A session is recorded once its time has come."), code="future")
    r = session.course.treatment_request
    if outcome == SessionStatus.DONE:
        ensure_paid_if_international(r)
    result = None
    if outcome == SessionStatus.MISSED:
        day = timezone.localtime(session.start).date()
        course_ids = [session.course_id]
        end_date = _reschedule_horizon(course_ids, day)
        live = live_schedule(
            session.gantry_id,
            day,
            end_date,
            courses=_definitions_for_reschedule(course_ids, day, end_date),
        )
        try:
            result = incremental.reschedule_after_missed_session(
                live, str(session.course_id), day, options=_solver_options()
            )
        except InfeasibleScheduleError as exc:
            raise _infeasible(exc) from None
    session.status = outcome
    session.status_note = note[:200]
    session.save(update_fields=["status", "status_note"])
    audit.record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        obj=session,
        treatment_request_id=r.pk,
        summary=f"session {outcome}",
    )
    if result is not None:
        apply_schedule(
            result,
            [str(session.course_id)],
            since=timezone.localtime(session.start).date(),
            note="moved",
        )
    elif r.state == State.SCHEDULED:
        referral_services.perform(actor=actor, treatment_request=r, action="start_treatment")
    return session


@transaction.atomic
def record_downtime(
    *, actor, start: datetime, end: datetime, reason: str, gantry_id: str = "G1"
) -> tuple[MachineDowntime, list[GantrySession]]:
    """Record that the gantry cannot treat from ``start`` to ``end``; its sessions move.

    Sessions (planned or announced) the downtime hits are cancelled and each course hit gets its
    lost fractions pushed to its end (``incremental.reschedule_after_downtime``). Returns the
    downtime and the new sessions.
    """
    if not actor.is_authenticated or actor.role not in SESSION_RECORDERS:
        raise PermissionDenied(_("You may not record machine downtimes."))
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Please give a reason."), code="note")
    if end <= start:
        raise ValidationError(_("The end must be after the start."), code="order")
    downtime = MachineDowntime.objects.create(
        gantry_id=gantry_id, start=start, end=end, reason=reason[:200], recorded_by=actor
    )
    hit = GantrySession.objects.filter(
        gantry_id=gantry_id,
        status__in=(SessionStatus.PLANNED, SessionStatus.ANNOUNCED),
        start__lt=end,
        end__gt=start,
    )
    course_ids = sorted({str(c) for c in hit.values_list("course_id", flat=True)})
    created: list[GantrySession] = []
    if course_ids:
        first_day = timezone.localtime(start).date()
        end_date = _reschedule_horizon(course_ids, timezone.localtime(end).date())
        live = live_schedule(
            gantry_id,
            first_day,
            end_date,
            courses=_definitions_for_reschedule(course_ids, first_day, end_date),
            exclude_downtime_pk=downtime.pk,
        )
        blocks = _downtime_blocks(downtime, first_day, end_date, default_gantry_day())
        # A session outside the gantry day (not in any block) is hit too: block its whole day.
        for session in hit:
            day = timezone.localtime(session.start).date()
            if not any(b.day == day for b in blocks):
                blocks.append(Downtime(gantry_id, day, 0, 24 * 60, reason))
        try:
            result = incremental.reschedule_after_downtime(live, blocks, options=_solver_options())
        except InfeasibleScheduleError as exc:
            raise _infeasible(exc) from None
        for new in apply_schedule(result, course_ids, since=first_day, note="downtime").values():
            created.extend(new)
    audit.record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        obj=downtime,
        summary=f"downtime courses={len(course_ids)} new_sessions={len(created)}",
    )
    return downtime, created
